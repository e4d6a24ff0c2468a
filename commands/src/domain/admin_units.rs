//! Districts and communes (GSO codes, 2023) of the provinces we have data for, from
//! `campaigns/admin_units.csv` (a copy of `shared/data/admin_units.csv`).

use std::collections::BTreeMap;

const CSV: &str = include_str!("../../../campaigns/admin_units.csv");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub district_code: String,
    pub district_name: String,
    pub commune_name: String,
}

/// Commune code → its unit, for the province whose CCCD code is `cccd_province`.
pub fn communes_of(cccd_province: &str) -> BTreeMap<String, Unit> {
    // GSO province codes are the CCCD codes without the leading zero (046 ↔ 46).
    let gso = cccd_province.trim_start_matches('0');
    CSV.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            (f.len() == 6 && f[0].trim_start_matches('0') == gso).then(|| {
                (
                    f[4].to_string(),
                    Unit { district_code: f[2].into(), district_name: f[3].into(), commune_name: f[5].into() },
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hue_has_its_141_communes_and_hung_yen_its_161() {
        assert_eq!(super::communes_of("046").len(), 141);
        assert_eq!(super::communes_of("033").len(), 161);
    }
}
