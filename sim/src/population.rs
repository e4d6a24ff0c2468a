//! The simulated population: citizens with valid CCCDs, ages from an age pyramid (16+
//! only), communes of the campaign's province, and a segment each. Deterministic per seed.

use commands::domain::Cccd;
use commands::domain::cccd::PROVINCE_CODES;
use rand::Rng;
use rand::distr::weighted::WeightedIndex;
use rand::rngs::StdRng;
use std::collections::HashSet;

#[derive(Debug, Clone)]
pub struct Citizen {
    pub cccd: String,
    pub commune: String,
    pub segment: &'static str,
}

/// Share of the 16+ population per age band, roughly Vietnam's 2019 census pyramid.
const AGE_BANDS: [(u16, u16, u32); 7] =
    [(16, 24, 15), (25, 34, 19), (35, 44, 18), (45, 54, 16), (55, 64, 14), (65, 74, 11), (75, 90, 7)];

/// People whose CCCD was issued in another province but who live here (R16 counts them).
const ELSEWHERE_PERCENT: u32 = 8;

pub fn generate(rng: &mut StdRng, size: usize, province: &str, communes: &[String], year: u16) -> Vec<Citizen> {
    let ages = WeightedIndex::new(AGE_BANDS.iter().map(|b| b.2)).expect("positive weights");
    let others: Vec<&str> = PROVINCE_CODES.iter().map(|(c, _)| *c).filter(|c| *c != province).collect();
    let mut seen = HashSet::with_capacity(size);
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        let (lo, hi, _) = AGE_BANDS[rng.sample(&ages)];
        let age = rng.random_range(lo..=hi);
        let born = year - age;
        let female = rng.random_bool(0.51);
        let digit = if born >= 2000 { 2 } else { 0 } + u16::from(female);
        let code =
            if rng.random_ratio(ELSEWHERE_PERCENT, 100) { others[rng.random_range(0..others.len())] } else { province };
        let cccd = format!("{code}{digit}{:02}{:06}", born % 100, rng.random_range(0..1_000_000));
        if !seen.insert(cccd.clone()) {
            continue;
        }
        debug_assert!(Cccd::parse(&cccd, year).is_ok(), "{cccd}");
        let segment = segment(rng, age);
        out.push(Citizen { cccd, commune: communes[rng.random_range(0..communes.len())].clone(), segment });
    }
    out
}

fn segment(rng: &mut StdRng, age: u16) -> &'static str {
    if age <= 22 && rng.random_bool(0.6) {
        return "student";
    }
    if age > 60 {
        return "adult_citizen";
    }
    match rng.random_range(0..100) {
        0..8 => "state_agency",
        8..12 => "socio_political",
        12..20 => "public_service",
        20..45 => "sme_worker",
        _ => "adult_citizen",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_citizen_is_valid_unique_and_old_enough_and_the_seed_decides() {
        let communes = vec!["19750".to_string(), "19819".to_string()];
        let a = generate(&mut StdRng::seed_from_u64(7), 5000, "046", &communes, 2023);
        let b = generate(&mut StdRng::seed_from_u64(7), 5000, "046", &communes, 2023);
        assert_eq!(a.iter().map(|c| &c.cccd).collect::<Vec<_>>(), b.iter().map(|c| &c.cccd).collect::<Vec<_>>());
        assert_eq!(a.iter().map(|c| &c.cccd).collect::<HashSet<_>>().len(), 5000);
        for c in &a {
            let cccd = Cccd::parse(&c.cccd, 2023).unwrap();
            assert!(2023 - cccd.birth_year() >= 16, "{}", c.cccd);
        }
        let here = a.iter().filter(|c| c.cccd.starts_with("046")).count();
        assert!((4400..4800).contains(&here), "{here} of 5000 from the province");
    }
}
