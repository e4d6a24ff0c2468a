//! A random but valid-looking mix of commands from every kind of user, for tests that
//! compare live state with a rebuild and for crash tests. Many commands are refused (a
//! citizen already issued, a demand not due): refusals are part of what must be folded.

use chrono::{TimeZone, Utc};
use commands::domain::event::ComplaintKind;
use commands::domain::*;
use event_store::RegistryTime;
use rand::Rng;
use rand::rngs::StdRng;

pub const HUE: &str = include_str!("../../campaigns/thua-thien-hue.toml");
pub const CAS: [&str; 6] = ["VNPT-CA", "VIETTEL-CA", "MISA-CA", "BKAV-CA", "FPT-CA", "CA2"];
pub const COUNTER: &str = "HUE-PD-1";

/// Half-way through phase 1 of the Huế campaign.
pub fn start_time() -> RegistryTime {
    RegistryTime(Utc.with_ymd_and_hms(2023, 9, 1, 8, 0, 0).unwrap().timestamp_millis())
}

pub fn ca(i: usize) -> CaId {
    CaId::parse(CAS[i % CAS.len()]).unwrap()
}

/// The `i`-th citizen of a pool: born 1950–2005, Huế province code.
pub fn citizen(i: u64) -> Cccd {
    let year = 1950 + (i % 56);
    let century_sex = if year >= 2000 { 2 + i % 2 } else { i % 2 };
    Cccd::parse(&format!("046{century_sex}{:02}{:06}", year % 100, i % 1_000_000), 2023).unwrap()
}

/// What every workload starts with: the six CAs and a one-stop counter.
pub fn setup() -> Vec<Command> {
    let mut v: Vec<Command> = commands::domain::ca::SEED_CAS
        .iter()
        .map(|(id, name, app)| Command::RegisterCa {
            ca: CaId::parse(id).unwrap(),
            name: (*name).into(),
            app_name: (*app).into(),
        })
        .collect();
    v.push(Command::RegisterCounter { counter: COUNTER.into(), commune: "19819".into() });
    v.push(Command::AssignZone { ca: ca(2), commune: "19774".into() });
    v
}

pub struct Workload {
    pub communes: Vec<String>,
    pub citizens: u64,
    demands: u64,
    complaints: u64,
}

impl Workload {
    pub fn new(citizens: u64) -> Self {
        let communes = commands::domain::admin_units::communes_of("046").keys().take(12).cloned().collect();
        Self { communes, citizens, demands: 0, complaints: 0 }
    }

    /// One command sent at `now`, as the CA, portal or Sở would send it.
    pub fn next(&mut self, rng: &mut StdRng, now: RegistryTime) -> Command {
        let who = rng.random_range(0..CAS.len());
        let person = citizen(rng.random_range(0..self.citizens));
        let commune = self.communes[rng.random_range(0..self.communes.len())].clone();
        let issuance = |rng: &mut StdRng, commune: String| {
            // Mostly recorded within minutes of activation; some late (R4).
            let window = if rng.random_ratio(1, 10) { 7_200_000 } else { 300_000 };
            let (channel, place) = match rng.random_range(0..4) {
                0 => (Channel::App, Place::Commune),
                1 => (Channel::CaOffice, Place::Commune),
                2 => (Channel::OneStopCounter, Place::Counter(COUNTER.into())),
                _ => (Channel::Demand, Place::Commune),
            };
            Box::new(RecordIssuance {
                citizen: person,
                ca: ca(who),
                channel,
                segment: Segment::ALL[rng.random_range(0..Segment::ALL.len())],
                commune,
                place,
                status: if rng.random_ratio(1, 20) { IssuanceStatus::TechnicalError } else { IssuanceStatus::Active },
                staff: None,
                serial: None,
                activated_at: now.plus_ms(-rng.random_range(0..window)),
            })
        };
        match rng.random_range(0..100) {
            0..30 => Command::LookUpCitizen { citizen: person, ca: ca(who), staff: None },
            30..65 => Command::RecordIssuance(issuance(rng, commune)),
            65..68 => Command::SwitchCa(issuance(rng, commune)),
            68..71 => Command::ImportLegacyIssuance {
                citizen: person,
                ca: ca(who),
                issued_at: RegistryTime(now.0 - 200 * 86_400_000),
                serial: Some(format!("S{}", rng.random::<u32>())),
            },
            71..82 => {
                self.demands += 1;
                Command::RegisterDemand {
                    citizen: person,
                    mode: if rng.random() { DemandMode::Home } else { DemandMode::Remote },
                    phone: "0905123456".into(),
                    commune,
                    chosen_ca: rng.random_ratio(1, 2).then(|| ca(who)),
                }
            }
            82..90 => Command::AcknowledgeDemand { demand: rng.random_range(1..=self.demands.max(1)), ca: ca(who) },
            90..95 => Command::ExpireDemand { demand: rng.random_range(1..=self.demands.max(1)) },
            95..97 => {
                self.complaints += 1;
                Command::FileComplaint {
                    against: ca(who),
                    kind: ComplaintKind::DuplicateIssuance,
                    citizen: Some(person),
                    text: "issued without asking".into(),
                }
            }
            97 => Command::ResolveComplaint {
                complaint: rng.random_range(1..=self.complaints.max(1)),
                upheld: rng.random(),
                checked: vec![],
                note: "checked against the trail".into(),
            },
            98 => Command::SuspendCa { ca: ca(who), reason: "late reports".into() },
            _ => Command::ReinstateCa { ca: ca(who) },
        }
    }
}
