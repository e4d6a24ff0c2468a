//! Randomised tests print their seed; `KYSO_SEED=<n>` replays one exactly.

use rand::SeedableRng;
use rand::rngs::StdRng;

pub fn rng(test: &str) -> StdRng {
    let seed = std::env::var("KYSO_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    eprintln!("{test}: KYSO_SEED={seed}");
    StdRng::seed_from_u64(seed)
}
