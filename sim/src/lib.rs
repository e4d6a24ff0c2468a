//! `kyso sim`: a province's campaign driven through the registry's real HTTP API, for demos,
//! realistic data and end-to-end checks. Six CAs with their own market shares and habits
//! (one slow to record, one that ignores demands, one that races door to door for citizens
//! who already hold a certificate and ends up expelled), every channel its phase allows,
//! demands (some left to expire), a legacy import, staff QR checks and a complaint upheld
//! into a violation. What the simulator did is tallied from the API's own answers and
//! compared, at the end, with the registry's reports.
//!
//! The plan (who, where, which CA, which channel, when) is decided by the seed alone; with a
//! `--test-clock` server the days pass by moving that clock, otherwise everything happens
//! today.

pub mod client;
pub mod population;

use client::{Answer, Client, ClientError};
use commands::domain::Campaign;
use futures::StreamExt;
use population::Citizen;
use rand::distr::weighted::WeightedIndex;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// The tokens the simulator acts with, one per role it plays.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub admin: String,
    pub portal: String,
    /// CA id → that CA's token.
    pub cas: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub url: String,
    pub population: usize,
    /// Days the campaign runs for in the simulation.
    pub days: u32,
    /// Percent of the population that gets a certificate during the run.
    pub uptake_percent: u32,
    pub seed: u64,
    /// Citizens served at once.
    pub concurrency: usize,
    pub progress: bool,
}

/// How one CA behaves.
struct Habits {
    ca: &'static str,
    /// Percent of the citizens who choose it.
    share: u32,
    /// Percent of issuances it looks the citizen up before (R2).
    looks_up: u32,
    /// Minutes from activation to recording (R4: over the campaign's limit is late).
    records_after_min: (i64, i64),
    answers_demands: bool,
    /// Goes door to door for citizens another CA already served (refused, R1; complained
    /// about, R13).
    races: bool,
}

const HABITS: [Habits; 6] = [
    Habits { ca: "VNPT-CA", share: 34, looks_up: 97, records_after_min: (1, 20), answers_demands: true, races: false },
    Habits {
        ca: "VIETTEL-CA",
        share: 24,
        looks_up: 95,
        records_after_min: (1, 25),
        answers_demands: true,
        races: false,
    },
    Habits { ca: "MISA-CA", share: 12, looks_up: 90, records_after_min: (2, 40), answers_demands: true, races: false },
    // Slow to record: most of its issuances are late.
    Habits {
        ca: "BKAV-CA",
        share: 11,
        looks_up: 60,
        records_after_min: (45, 360),
        answers_demands: true,
        races: false,
    },
    Habits { ca: "FPT-CA", share: 11, looks_up: 85, records_after_min: (1, 30), answers_demands: true, races: true },
    // Ignores the demands assigned to it: they expire (R12).
    Habits { ca: "CA2", share: 8, looks_up: 92, records_after_min: (2, 30), answers_demands: false, races: false },
];

/// Percent of the day's citizens who go through a demand on the portal first.
const DEMAND_PERCENT: u32 = 6;
/// Percent of the population whose earlier (pre-campaign) certificate one CA imports (R6).
const LEGACY_PERCENT: usize = 1;
/// Racing attempts per day, as a percent of the certificates issued so far.
const RACE_PERCENT: usize = 2;
const STAFF_PER_CA: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Setup(String),
}

/// What the simulator did, from the API's answers, and what the reports say.
#[derive(Debug, Default)]
pub struct Summary {
    pub requests: u64,
    pub population: usize,
    pub days: u32,
    /// New certificates per CA (201 answers).
    pub issued: BTreeMap<String, u64>,
    pub late: u64,
    pub lookups: u64,
    /// Issuances refused because the citizen already holds a certificate (409).
    pub refused_already_issued: u64,
    /// Acts of an expelled CA, refused (403 ca-not-active).
    pub refused_inactive: u64,
    pub legacy_imported: u64,
    pub demands_registered: u64,
    pub demands_acknowledged: u64,
    /// Demands left unanswered by a CA that ignores them; they expire after the TTL.
    pub demands_ignored: u64,
    pub qr_checks: u64,
    pub violations: u64,
    pub expelled: Vec<String>,
    /// Answers the plan did not expect, by problem type, with one example each.
    pub unexpected: BTreeMap<String, (u64, String)>,
    /// (what, the simulator's count, the report's) for each check against the reports.
    pub checks: Vec<(String, u64, u64)>,
}

impl Summary {
    pub fn agrees(&self) -> bool {
        self.checks.iter().all(|(_, a, b)| a == b) && self.unexpected.is_empty()
    }

    fn unexpected(&mut self, what: &str, answer: &Answer) {
        let kind =
            answer.body["type"].as_str().unwrap_or("no problem type").rsplit('/').next().unwrap_or("").to_string();
        let entry = self.unexpected.entry(format!("{what}: {} {kind}", answer.status)).or_insert((0, String::new()));
        entry.0 += 1;
        if entry.1.is_empty() {
            entry.1 = answer.body["detail"].as_str().unwrap_or_default().to_string();
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "simulated {} citizens over {} days: {} requests", self.population, self.days, self.requests)?;
        writeln!(f, "{:<34} {:>10}", "certificates issued", self.issued.values().sum::<u64>())?;
        for (ca, n) in &self.issued {
            writeln!(f, "  {ca:<32} {n:>10}")?;
        }
        for (what, n) in [
            ("  of which recorded late (R4)", self.late),
            ("lookups (R2)", self.lookups),
            ("refused: already issued (R1)", self.refused_already_issued),
            ("refused: CA not active (R13)", self.refused_inactive),
            ("legacy certificates imported (R6)", self.legacy_imported),
            ("demands registered (R12)", self.demands_registered),
            ("  acknowledged", self.demands_acknowledged),
            ("  ignored, left to expire", self.demands_ignored),
            ("staff QR checks (R11)", self.qr_checks),
            ("violations published (R13)", self.violations),
        ] {
            writeln!(f, "{what:<34} {n:>10}")?;
        }
        writeln!(f, "{:<34} {:>10}", "CAs expelled", self.expelled.join(", "))?;
        if !self.unexpected.is_empty() {
            writeln!(f, "unexpected answers:")?;
            for (what, (n, example)) in &self.unexpected {
                writeln!(f, "  {n:>6} × {what} (e.g. {example})")?;
            }
        }
        writeln!(f, "checked against the registry's reports:")?;
        for (what, mine, theirs) in &self.checks {
            let verdict = if mine == theirs { "ok" } else { "MISMATCH" };
            writeln!(f, "  {what:<44} sim {mine:>9}  report {theirs:>9}  {verdict}")?;
        }
        Ok(())
    }
}

/// One citizen's path through a simulated day.
#[derive(Debug, Clone)]
struct Visit {
    citizen: Citizen,
    ca: usize,
    channel: &'static str,
    via_demand: bool,
    /// For a demand: let the registry assign the CA (R19) instead of choosing.
    leave_choice: bool,
    looks_up: bool,
    minutes_ago: i64,
    staff: Option<u64>,
}

struct Shared {
    client: Client,
    tokens: Tokens,
    /// The zone CA of each zoned commune (R14: door to door there is theirs).
    zones: BTreeMap<String, String>,
    summary: Mutex<Summary>,
    /// Citizens holding a certificate so far (whom the racing CA goes after).
    issued_citizens: Mutex<Vec<String>>,
    /// The registry's test clock as last moved by the simulator; `None`: the wall clock.
    now: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
}

impl Shared {
    fn tally(&self, f: impl FnOnce(&mut Summary)) {
        f(&mut self.summary.lock().expect("no panics while held"));
    }

    fn ca_token(&self, ca: &str) -> &str {
        &self.tokens.cas[ca]
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.now.lock().expect("not poisoned").unwrap_or_else(wall_clock)
    }
}

/// Without a test clock the registry runs on the wall clock, and so does the plan.
fn wall_clock() -> chrono::DateTime<chrono::Utc> {
    use commands::Clock;
    let now = commands::SystemClock.now();
    chrono::DateTime::from_timestamp_millis(now.0).unwrap_or_default()
}

fn refused_inactive(a: &Answer) -> bool {
    a.status == 403 && a.body["type"].as_str().is_some_and(|t| t.ends_with("/ca-not-active"))
}

/// Runs the whole simulation and checks the reports.
pub async fn run(config: &Config, tokens: Tokens) -> Result<Summary, SimError> {
    let client = Client::new(&config.url)?;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let info = client.get(None, "/v1/campaign").await?;
    if !info.ok() {
        return Err(SimError::Setup(format!("GET /v1/campaign answered {}: is {} a kyso?", info.status, config.url)));
    }
    let (campaign, communes) = campaign_of(info.body)?;
    for token in [&tokens.admin, &tokens.portal].into_iter().chain(tokens.cas.values()) {
        wait_until_known(&client, token).await?;
    }
    let now = server_now(&client, &tokens.admin).await?;
    let test_clock = now.is_some();
    let days = config.days.max(1);
    let today = now.unwrap_or_else(wall_clock).date_naive();
    if campaign.phase_at(today).is_none() {
        return Err(SimError::Setup(format!(
            "the registry's day {today} is outside the campaign (from {}); start it with --test-clock inside the campaign",
            campaign.start_date
        )));
    }
    let year = chrono::Datelike::year(&today) as u16;
    let mut people = population::generate(&mut rng, config.population, &campaign.province_code, &communes, year);

    let shared = Shared {
        client,
        tokens,
        zones: BTreeMap::new(),
        summary: Mutex::new(Summary { population: config.population, days, ..Summary::default() }),
        issued_citizens: Mutex::new(Vec::new()),
        now: Mutex::new(now),
    };
    // The registry may hold earlier runs: the reports are checked for what this run added.
    let before = report_numbers(&shared).await?;
    let setup = set_up(&shared, &communes, &mut rng).await?;
    let shared = Shared { zones: setup.zones, ..shared };
    let staff = setup.staff;

    // R6: VNPT's certificates from before the campaign, imported once (idempotent on rerun).
    let legacy: Vec<Citizen> = people.split_off(people.len() - people.len() * LEGACY_PERCENT / 100);
    import_legacy(&shared, &legacy, &campaign).await?;
    shared.issued_citizens.lock().expect("not poisoned").extend(legacy.iter().map(|c| c.cccd.clone()));

    let uptake = people.len() * config.uptake_percent.min(100) as usize / 100;
    people.truncate(uptake);
    let per_day = people.len().div_ceil(days as usize);
    let bar = progress(config.progress, people.len() as u64);
    let racer = HABITS.iter().position(|h| h.races).expect("one CA races");
    for day in 0..days {
        let date = shared.now().date_naive();
        let Some(phase) = campaign.phase_at(date) else { break };
        let channels: Vec<&'static str> = phase.channels.iter().map(|c| c.name()).collect();
        let start = (day as usize * per_day).min(people.len());
        let todays = &people[start..(start + per_day).min(people.len())];
        let mut visits: Vec<Visit> =
            todays.iter().map(|c| plan(&mut rng, c, &channels, &staff, &shared.zones)).collect();
        // The portal offers only active CAs for demands (an earlier run may have expelled one).
        visits.iter_mut().filter(|v| setup.inactive.contains(HABITS[v.ca].ca)).for_each(|v| v.leave_choice = true);
        if day == days - 1 {
            // Its last day: expelled in the morning, its acts from then on are refused. The
            // portal no longer offers it for demands.
            expel(&shared, HABITS[racer].ca).await?;
            visits.iter_mut().filter(|v| v.ca == racer).for_each(|v| v.leave_choice = true);
        }
        futures::stream::iter(visits)
            .map(|v| async { (visit(&shared, v).await, bar.inc(1)).0 })
            .buffer_unordered(config.concurrency.max(1))
            .collect::<Vec<Result<(), ClientError>>>()
            .await
            .into_iter()
            .collect::<Result<(), ClientError>>()?;
        race(&shared, &mut rng, racer, &communes).await?;
        qr_checks(&shared, &mut rng, &staff).await?;
        if day == days / 2 {
            complain_and_uphold(&shared, HABITS[racer].ca).await?;
        }
        if test_clock && day + 1 < days {
            advance(&shared, "1d").await?;
        }
    }
    bar.finish_and_clear();
    if test_clock {
        // Past every deadline: the ignored demands expire (R12).
        advance(&shared, "49h").await?;
    }
    let after = report_numbers(&shared).await?;
    let mut summary = shared.summary.into_inner().expect("not poisoned");
    summary.requests = shared.client.sent();
    summary.checks = checks(&summary, &before, &after);
    Ok(summary)
}

fn progress(show: bool, len: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} citizens served ({per_sec}, {eta} left)")
            .expect("a valid template"),
    );
    bar
}

/// The campaign's rules and its communes, from `GET /v1/campaign`.
fn campaign_of(mut info: Value) -> Result<(Campaign, Vec<String>), SimError> {
    let districts = info.as_object_mut().and_then(|o| o.remove("districts")).unwrap_or(Value::Null);
    let campaign: Campaign = serde_json::from_value(info)
        .map_err(|e| SimError::Setup(format!("GET /v1/campaign: not a campaign this simulator knows: {e}")))?;
    let communes: Vec<String> = districts
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["communes"].as_object())
        .flat_map(|c| c.keys().cloned())
        .collect();
    if communes.is_empty() {
        return Err(SimError::Setup("the campaign's province has no communes in the registry's data".into()));
    }
    Ok((campaign, communes))
}

/// Waits (up to 5 s) for the server to know a token just added to its file: it re-reads the
/// file at most once a second. 401 is an unknown token; any other answer (200, 403) a known one.
async fn wait_until_known(client: &Client, token: &str) -> Result<(), SimError> {
    for _ in 0..50 {
        if client.get(Some(token), "/v1/events?limit=1").await?.status != 401 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(SimError::Setup("the server does not know the simulator's tokens: is --data-dir the server's?".into()))
}

/// The server's clock if it runs a test clock (`POST /v1/test/clock` exists), else `None`.
async fn server_now(client: &Client, admin: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, SimError> {
    move_clock(client, admin, "0s").await
}

async fn advance(shared: &Shared, by: &str) -> Result<(), SimError> {
    let now = move_clock(&shared.client, &shared.tokens.admin, by).await?;
    if now.is_none() {
        return Err(SimError::Setup("the test clock went away".into()));
    }
    *shared.now.lock().expect("not poisoned") = now;
    Ok(())
}

/// Moves the test clock by `by` and answers its new time; `None` when the server runs on
/// the wall clock (the route does not exist then).
async fn move_clock(client: &Client, admin: &str, by: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, SimError> {
    let a = client.post(admin, "/v1/test/clock", json!({ "advance": by })).await?;
    match (a.status, a.body["now"].as_str().and_then(|s| s.parse().ok())) {
        (200, Some(now)) => Ok(Some(now)),
        (404, _) => Ok(None),
        (s, _) => Err(SimError::Setup(format!("the test clock (advance {by}) answered {s}: {}", a.body))),
    }
}

/// What the campaign starts from.
struct Setup {
    /// Zoned commune → its CA.
    zones: BTreeMap<String, String>,
    /// Per CA (in `HABITS` order), its field staff as (id, QR token); none for a CA that is
    /// no longer active.
    staff: Vec<Vec<(u64, String)>>,
    /// CAs an earlier run left suspended or expelled.
    inactive: std::collections::BTreeSet<String>,
}

/// The CAs, a few zones for the largest CA, and field staff (R11, R13, R14).
async fn set_up(shared: &Shared, communes: &[String], rng: &mut StdRng) -> Result<Setup, SimError> {
    let admin = &shared.tokens.admin;
    for (id, name, app) in commands::domain::ca::SEED_CAS {
        let a = shared.client.post(admin, "/v1/cas", json!({"ca": id, "name": name, "app_name": app})).await?;
        // 409: registered by an earlier run.
        if !a.ok() && a.status != 409 {
            return Err(SimError::Setup(format!("registering {id}: {} {}", a.status, a.body)));
        }
    }
    let mut zones = BTreeMap::new();
    for commune in communes.iter().step_by(10) {
        let a = shared.client.post(admin, "/v1/zones", json!({"ca": "VNPT-CA", "commune": commune})).await?;
        if !a.ok() {
            return Err(SimError::Setup(format!("zoning {commune}: {} {}", a.status, a.body)));
        }
        zones.insert(commune.clone(), "VNPT-CA".to_string());
    }
    let cas = shared.client.get(None, "/v1/cas").await?;
    let inactive: std::collections::BTreeSet<String> = cas
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] != "active")
        .filter_map(|c| c["ca"].as_str().map(str::to_string))
        .collect();
    let mut staff = Vec::new();
    for h in &HABITS {
        if inactive.contains(h.ca) {
            staff.push(Vec::new());
            continue;
        }
        let mut theirs = Vec::new();
        for i in 0..STAFF_PER_CA {
            let body = json!({
                "full_name": format!("Nhân viên {} {}", h.ca, i + 1),
                "birth_year": rng.random_range(1970..2002),
                "position": "field agent",
                "photo_ref": format!("photos/{}/{}.jpg", h.ca, i + 1),
            });
            let a = shared.client.post(shared.ca_token(h.ca), "/v1/staff", body).await?;
            if a.status != 201 {
                return Err(SimError::Setup(format!("registering staff for {}: {} {}", h.ca, a.status, a.body)));
            }
            let id = a.body["staff"].as_u64().ok_or_else(|| SimError::Setup("staff answer without id".into()))?;
            theirs.push((id, a.body["qr_token"].as_str().unwrap_or_default().to_string()));
        }
        staff.push(theirs);
    }
    Ok(Setup { zones, staff, inactive })
}

async fn import_legacy(shared: &Shared, legacy: &[Citizen], campaign: &Campaign) -> Result<(), SimError> {
    if legacy.is_empty() {
        return Ok(());
    }
    let before = campaign.start_date - chrono::Days::new(60);
    let mut csv = String::from("cccd,issued_at,serial\n");
    for (i, c) in legacy.iter().enumerate() {
        csv.push_str(&format!("{},{},LEGACY-{i:06}\n", c.cccd, before + chrono::Days::new(i as u64 % 50)));
    }
    let a = shared.client.post_csv(shared.ca_token("VNPT-CA"), "/v1/imports", csv).await?;
    if !a.ok() {
        return Err(SimError::Setup(format!("the legacy import answered {}: {}", a.status, a.body)));
    }
    let n = a.body["imported"].as_u64().unwrap_or(0) + a.body["unchanged"].as_u64().unwrap_or(0);
    shared.tally(|s| s.legacy_imported += n);
    Ok(())
}

fn plan(
    rng: &mut StdRng,
    citizen: &Citizen,
    channels: &[&'static str],
    staff: &[Vec<(u64, String)>],
    zones: &BTreeMap<String, String>,
) -> Visit {
    let shares = WeightedIndex::new(HABITS.iter().map(|h| h.share)).expect("positive shares");
    let ca = rng.sample(&shares);
    let via_demand = rng.random_ratio(DEMAND_PERCENT, 100) && channels.contains(&"demand");
    // Door to door only where the CA may go (R14 zones); counters and booths need places the
    // simulator does not set up, so their share goes to the CA's office.
    let mut channel = match rng.random_range(0..100) {
        0..40 => "app",
        40..65 => "door_to_door",
        _ => "ca_office",
    };
    let zoned_to_other = zones.get(&citizen.commune).is_some_and(|z| z != HABITS[ca].ca);
    let door_to_door_closed = zoned_to_other || staff[ca].is_empty();
    if !channels.contains(&channel) || (channel == "door_to_door" && door_to_door_closed) {
        channel = "ca_office";
    }
    if via_demand {
        channel = "demand";
    }
    let (lo, hi) = HABITS[ca].records_after_min;
    Visit {
        citizen: citizen.clone(),
        ca,
        channel,
        via_demand,
        leave_choice: rng.random_bool(0.5),
        looks_up: rng.random_ratio(HABITS[ca].looks_up, 100),
        minutes_ago: rng.random_range(lo..=hi),
        staff: (channel == "door_to_door").then(|| staff[ca][rng.random_range(0..staff[ca].len())].0),
    }
}

/// One citizen's day: maybe a demand first, a lookup, the issuance.
async fn visit(shared: &Shared, v: Visit) -> Result<(), ClientError> {
    let mut ca = HABITS[v.ca].ca;
    if v.via_demand {
        let mut body =
            json!({"citizen": v.citizen.cccd, "mode": "home", "phone": "0905000000", "commune": v.citizen.commune});
        if !v.leave_choice {
            body["chosen_ca"] = json!(ca);
        }
        let a = shared.client.post(&shared.tokens.portal, "/v1/demands", body).await?;
        if a.status != 201 {
            shared.tally(|s| s.unexpected("register a demand", &a));
            return Ok(());
        }
        shared.tally(|s| s.demands_registered += 1);
        // The registry may have assigned another CA (zone or rotation, R19).
        ca = a.body["ca"].as_str().and_then(|c| HABITS.iter().find(|h| h.ca == c)).map_or(ca, |h| h.ca);
        let habits = HABITS.iter().find(|h| h.ca == ca).expect("one of ours");
        if !habits.answers_demands {
            shared.tally(|s| s.demands_ignored += 1);
            return Ok(());
        }
        let id = a.body["demand"].as_u64().unwrap_or_default();
        let a = shared.client.post(shared.ca_token(ca), &format!("/v1/demands/{id}/ack"), json!({})).await?;
        if a.ok() {
            shared.tally(|s| s.demands_acknowledged += 1);
        } else {
            shared.tally(|s| s.unexpected("acknowledge a demand", &a));
        }
    }
    if v.looks_up {
        let a = shared.client.get(Some(shared.ca_token(ca)), &format!("/v1/citizens/{}", v.citizen.cccd)).await?;
        shared.tally(|s| match a.status {
            200 => s.lookups += 1,
            _ if refused_inactive(&a) => s.refused_inactive += 1,
            _ => s.unexpected("look up", &a),
        });
    }
    let a = issue(shared, ca, &v.citizen, v.channel, v.minutes_ago, v.staff).await?;
    shared.tally(|s| match a.status {
        201 => {
            *s.issued.entry(ca.to_string()).or_default() += 1;
            s.late += u64::from(a.body["late"].as_bool().unwrap_or(false));
        }
        409 => s.refused_already_issued += 1,
        _ if refused_inactive(&a) => s.refused_inactive += 1,
        _ => s.unexpected("record an issuance", &a),
    });
    if a.status == 201 {
        shared.issued_citizens.lock().expect("not poisoned").push(v.citizen.cccd);
    }
    Ok(())
}

async fn issue(
    shared: &Shared,
    ca: &str,
    citizen: &Citizen,
    channel: &str,
    minutes_ago: i64,
    staff: Option<u64>,
) -> Result<Answer, ClientError> {
    let activated = shared.now() - chrono::Duration::minutes(minutes_ago);
    let mut body = json!({
        "citizen": citizen.cccd, "channel": channel, "segment": citizen.segment, "commune": citizen.commune,
        "activated_at": activated.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    if let Some(id) = staff {
        body["staff"] = json!(id);
    }
    shared.client.post(shared.ca_token(ca), "/v1/issuances", body).await
}

/// The racing CA goes door to door for citizens who already hold a certificate: each
/// attempt is refused and logged (R1, R3).
async fn race(shared: &Shared, rng: &mut StdRng, racer: usize, communes: &[String]) -> Result<(), ClientError> {
    let targets: Vec<String> = {
        let issued = shared.issued_citizens.lock().expect("not poisoned");
        let n = issued.len() * RACE_PERCENT / 100;
        issued.choose_multiple(rng, n).cloned().collect()
    };
    let ca = HABITS[racer].ca;
    for cccd in targets {
        let commune = communes.iter().find(|c| !shared.zones.contains_key(*c)).expect("unzoned communes exist");
        let citizen = Citizen { cccd, commune: commune.clone(), segment: "adult_citizen" };
        let a = issue(shared, ca, &citizen, "ca_office", 5, None).await?;
        shared.tally(|s| match a.status {
            409 => s.refused_already_issued += 1,
            _ if refused_inactive(&a) => s.refused_inactive += 1,
            _ => s.unexpected("race for a served citizen", &a),
        });
    }
    Ok(())
}

/// Citizens checking a staff member's badge on the public route (R11).
async fn qr_checks(shared: &Shared, rng: &mut StdRng, staff: &[Vec<(u64, String)>]) -> Result<(), ClientError> {
    let badges: Vec<&String> = staff.iter().flatten().map(|(_, token)| token).collect();
    if badges.is_empty() {
        return Ok(());
    }
    for _ in 0..5 {
        let token = badges[rng.random_range(0..badges.len())];
        let a = shared.client.get(None, &format!("/v1/staff/verify/{token}")).await?;
        shared.tally(|s| {
            if a.ok() && a.body["authorized"].is_boolean() {
                s.qr_checks += 1;
            } else {
                s.unexpected("verify a staff QR code", &a);
            }
        });
    }
    Ok(())
}

/// A citizen complains about the racing CA; the Sở upholds it (R13): a published violation.
async fn complain_and_uphold(shared: &Shared, ca: &str) -> Result<(), SimError> {
    let complaint = json!({"against": ca, "kind": "duplicate_issuance", "text": "staff came to sign me up again although I already have a certificate"});
    let a = shared.client.post(&shared.tokens.portal, "/v1/complaints", complaint).await?;
    let id = a.body["id"].as_u64().ok_or_else(|| SimError::Setup(format!("filing a complaint: {}", a.body)))?;
    let resolution = json!({"upheld": true, "note": "the audit trail shows repeated attempts on served citizens"});
    let a = shared.client.post(&shared.tokens.admin, &format!("/v1/complaints/{id}/resolve"), resolution).await?;
    if !a.ok() {
        return Err(SimError::Setup(format!("resolving complaint {id}: {} {}", a.status, a.body)));
    }
    shared.tally(|s| s.violations += 1);
    Ok(())
}

async fn expel(shared: &Shared, ca: &str) -> Result<(), SimError> {
    let a = shared
        .client
        .post(&shared.tokens.admin, &format!("/v1/cas/{ca}/expel"), json!({"reason": "R13: repeated violations"}))
        .await?;
    if !a.ok() {
        return Err(SimError::Setup(format!("expelling {ca}: {} {}", a.status, a.body)));
    }
    shared.tally(|s| s.expelled.push(ca.to_string()));
    Ok(())
}

/// The report numbers the simulator checks, once the reports have caught up with the log.
async fn report_numbers(shared: &Shared) -> Result<BTreeMap<String, u64>, SimError> {
    for _ in 0..600 {
        let r = shared.client.get(None, "/readyz").await?;
        if r.body["projection_lag"].as_u64() == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let admin = &shared.tokens.admin;
    let counts = shared.client.get(Some(admin), "/v1/reports/counts?group_by=ca").await?;
    let demands = shared.client.get(Some(admin), "/v1/reports/demands").await?;
    let violations = shared.client.get(None, "/v1/violations").await?;
    let mut out = BTreeMap::new();
    for r in counts.body.as_array().into_iter().flatten() {
        out.insert(
            format!("issued by {}", r["group"][0].as_str().unwrap_or_default()),
            r["issued"].as_u64().unwrap_or(0),
        );
    }
    let registered = demands.body["by_ca"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(_, stages)| stages.as_object().into_iter().flatten().filter_map(|(_, n)| n.as_u64()))
        .sum();
    out.insert("demands registered".into(), registered);
    out.insert("violations published".into(), violations.body.as_array().map_or(0, |v| v.len() as u64));
    Ok(out)
}

/// (what, the simulator's count, what the reports added during the run).
fn checks(s: &Summary, before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Vec<(String, u64, u64)> {
    let added = |k: &str| after.get(k).copied().unwrap_or(0).saturating_sub(before.get(k).copied().unwrap_or(0));
    let mut out: Vec<(String, u64, u64)> = HABITS
        .iter()
        .map(|h| {
            let k = format!("issued by {}", h.ca);
            let mine = s.issued.get(h.ca).copied().unwrap_or(0);
            (k.clone(), mine, added(&k))
        })
        .collect();
    out.push(("demands registered".into(), s.demands_registered, added("demands registered")));
    out.push(("violations published".into(), s.violations, added("violations published")));
    out
}
