//! Properties over random interleavings of commands from all six CAs: at most one campaign
//! issuance per citizen at every point, the holder is the first accepted by seq (or the CA
//! the citizen switched to), and replaying the log reproduces the live state exactly.

use chrono::{TimeZone, Utc};
use commands::domain::*;
use event_store::{RegistryTime, Seq};
use proptest::prelude::*;
use std::collections::HashMap;

const HUE: &str = include_str!("../../campaigns/thua-thien-hue.toml");
const CAS: [&str; 6] = ["VNPT-CA", "VIETTEL-CA", "MISA-CA", "BKAV-CA", "FPT-CA", "CA2"];
const COMMUNES: [&str; 2] = ["19819", "19774"];

#[derive(Debug, Clone)]
enum Op {
    Record { citizen: u8, ca: u8, late_minutes: u16 },
    Switch { citizen: u8, ca: u8 },
    Import { citizen: u8, ca: u8 },
    Demand { citizen: u8, ca: Option<u8> },
    Expire { demand: u8 },
    Suspend { ca: u8 },
    Reinstate { ca: u8 },
    Advance { hours: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0u8..12;
    let a = 0u8..6;
    prop_oneof![
        6 => (c.clone(), a.clone(), 0u16..180).prop_map(|(citizen, ca, late_minutes)| Op::Record { citizen, ca, late_minutes }),
        2 => (c.clone(), a.clone()).prop_map(|(citizen, ca)| Op::Switch { citizen, ca }),
        1 => (c.clone(), a.clone()).prop_map(|(citizen, ca)| Op::Import { citizen, ca }),
        2 => (c, proptest::option::of(a.clone())).prop_map(|(citizen, ca)| Op::Demand { citizen, ca }),
        1 => (1u8..10).prop_map(|demand| Op::Expire { demand }),
        1 => a.clone().prop_map(|ca| Op::Suspend { ca }),
        1 => a.prop_map(|ca| Op::Reinstate { ca }),
        1 => (1u8..60).prop_map(|hours| Op::Advance { hours }),
    ]
}

fn cccd(i: u8) -> Cccd {
    Cccd::parse(&format!("0461960{i:05}"), 2023).unwrap()
}
fn ca(i: u8) -> CaId {
    CaId::parse(CAS[i as usize]).unwrap()
}

fn command(op: &Op, now: RegistryTime) -> Option<Command> {
    let issuance = |citizen: u8, by: u8, activated_at: RegistryTime| RecordIssuance {
        citizen: cccd(citizen),
        ca: ca(by),
        channel: Channel::App,
        segment: Segment::AdultCitizen,
        commune: COMMUNES[citizen as usize % 2].into(),
        place: Place::Commune,
        status: IssuanceStatus::Active,
        staff: None,
        serial: None,
        activated_at,
    };
    Some(match *op {
        Op::Record { citizen, ca, late_minutes } => {
            Command::RecordIssuance(Box::new(issuance(citizen, ca, now.plus_ms(-i64::from(late_minutes) * 60_000))))
        }
        Op::Switch { citizen, ca } => Command::SwitchCa(Box::new(issuance(citizen, ca, now))),
        Op::Import { citizen, ca: by } => Command::ImportLegacyIssuance {
            citizen: cccd(citizen),
            ca: ca(by),
            issued_at: RegistryTime(now.0 - 90 * 86_400_000),
            serial: None,
        },
        Op::Demand { citizen, ca: by } => Command::RegisterDemand {
            citizen: cccd(citizen),
            mode: DemandMode::Remote,
            phone: "0905000000".into(),
            commune: COMMUNES[citizen as usize % 2].into(),
            chosen_ca: by.map(ca),
        },
        Op::Expire { demand } => Command::ExpireDemand { demand: u64::from(demand) },
        Op::Suspend { ca: by } => Command::SuspendCa { ca: ca(by), reason: "test".into() },
        Op::Reinstate { ca: by } => Command::ReinstateCa { ca: ca(by) },
        Op::Advance { .. } => return None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn no_citizen_ever_holds_two_campaign_issuances_and_replay_equals_live(ops in proptest::collection::vec(op(), 1..120)) {
        let mut live = Registry::new(Campaign::from_toml(HUE).unwrap());
        let mut log: Vec<(Seq, RegistryTime, Event)> = Vec::new();
        let mut now = RegistryTime(Utc.with_ymd_and_hms(2023, 8, 2, 8, 0, 0).unwrap().timestamp_millis());
        let push = |live: &mut Registry, log: &mut Vec<_>, now, e: Event| {
            let seq = Seq(log.len() as u64 + 1);
            apply(live, seq, now, &e);
            log.push((seq, now, e));
        };
        for (i, _) in CAS.iter().enumerate() {
            let events = decide(&live, &Command::RegisterCa { ca: ca(i as u8), name: "n".into(), app_name: "a".into() }, now).unwrap();
            for e in events { push(&mut live, &mut log, now, e); }
        }
        // Who holds each citizen's certificate according to the events alone.
        let mut holder: HashMap<Cccd, (CaId, Seq)> = HashMap::new();
        for op in &ops {
            if let Op::Advance { hours } = op {
                now = now.plus_ms(i64::from(*hours) * 3_600_000);
                continue;
            }
            let cmd = command(op, now).expect("not an Advance");
            let events = match decide(&live, &cmd, now) {
                Ok(events) => events,
                Err(rejection) => refusal_event(&cmd, &rejection).into_iter().collect(),
            };
            for e in events {
                match &e {
                    Event::IssuanceRecorded(i) => {
                        let seq = Seq(log.len() as u64 + 1);
                        match (&i.switched_from, holder.get(&i.citizen)) {
                            (None, existing) => prop_assert!(existing.is_none(), "a second first issuance for {}", i.citizen),
                            (Some(from), Some((current, _))) => prop_assert_eq!(from, current),
                            (Some(_), None) => prop_assert!(false, "a switch with no holder"),
                        }
                        holder.insert(i.citizen, (i.ca.clone(), seq));
                    }
                    Event::LegacyIssuanceImported { citizen, ca, .. } => {
                        prop_assert!(holder.get(citizen).is_none_or(|(c, _)| c == ca));
                        holder.entry(*citizen).or_insert((ca.clone(), Seq(log.len() as u64 + 1)));
                    }
                    _ => {}
                }
                push(&mut live, &mut log, now, e);
            }
            // At every point the live state names exactly the holder the log implies.
            for (citizen, (ca, seq)) in &holder {
                let h = live.citizen(citizen).and_then(|c| c.holding.as_ref()).expect("holder in state");
                prop_assert_eq!((live.holder(h), h.seq), (ca, *seq));
            }
        }
        let mut replayed = Registry::new(live.campaign.clone());
        for (seq, t, e) in &log {
            apply(&mut replayed, *seq, *t, e);
        }
        prop_assert_eq!(replayed, live);
    }
}
