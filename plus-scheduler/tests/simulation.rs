//! The simulation harness and the tuner.

use plus_scheduler::{
    Objective, Popularity, Search, SimConfig, SimError, TuneConfig, Weights, WorkerJoin, simulate,
    tune,
};

fn small() -> SimConfig {
    SimConfig {
        jobs: 3_000,
        projects: 500,
        workers: 5,
        initial_cache_step: 20,
        ..SimConfig::default()
    }
}

#[test]
fn same_config_same_report_and_seed_matters() {
    let a = simulate(&small()).unwrap();
    let b = simulate(&small()).unwrap();
    assert_eq!(a, b);
    let c = simulate(&SimConfig { seed: 2, ..small() }).unwrap();
    assert_ne!(a, c);
}

#[test]
fn totals_add_up() {
    let report = simulate(&small()).unwrap();
    assert_eq!(report.per_worker.iter().map(|w| w.jobs).sum::<u64>(), 3_000);
    let hits: u64 = report.per_worker.iter().map(|w| w.hits).sum();
    assert!((report.hit_rate - hits as f64 / 3_000.0).abs() < 1e-12);
    assert!(report.per_worker.iter().all(|w| w.hits <= w.jobs && w.caches <= 500));
    assert!(report.per_worker.iter().all(|w| (0.0..=1.0).contains(&w.mean_load)));
    assert!(report.ticks >= 3_000);
}

#[test]
fn seed_default_evens_caches_out() {
    // The source talk's experiment: 50,000 jobs on 10 workers with uneven initial caches ended with
    // every worker holding about the same number of caches.
    let report = simulate(&SimConfig::default()).unwrap();
    assert_eq!(report.workers, 10);
    assert!(report.cache_cv < 0.01, "cache_cv={}", report.cache_cv);
    let caches: Vec<usize> = report.per_worker.iter().map(|w| w.caches).collect();
    assert!(caches.iter().all(|&c| (3_000..3_500).contains(&c)), "{caches:?}");
}

#[test]
fn cache_only_weights_concentrate_and_load_only_weights_spread() {
    let cache_heavy = simulate(&SimConfig {
        weights: Weights { load: 0.0, has_cache: 100.0, total_caches: 0.0 },
        ..small()
    })
    .unwrap();
    let balanced = simulate(&small()).unwrap();
    assert!(
        cache_heavy.hit_rate >= balanced.hit_rate,
        "{} < {}",
        cache_heavy.hit_rate,
        balanced.hit_rate
    );
    assert!(cache_heavy.cache_cv > balanced.cache_cv);
}

#[test]
fn eviction_bounds_caches_and_joins_add_workers() {
    let report = simulate(&SimConfig {
        max_caches_per_worker: Some(50),
        joins: vec![WorkerJoin { after_jobs: 1_500, count: 2 }],
        ..small()
    })
    .unwrap();
    assert_eq!(report.workers, 7);
    assert!(report.per_worker.iter().all(|w| w.caches <= 50));
    let newcomers = &report.per_worker[5..];
    assert!(newcomers.iter().all(|w| w.jobs > 0), "new workers take work: {newcomers:?}");
}

#[test]
fn zipf_raises_the_hit_rate() {
    let uniform = simulate(&small()).unwrap();
    let skewed =
        simulate(&SimConfig { popularity: Popularity::Zipf { exponent: 1.2 }, ..small() }).unwrap();
    assert!(skewed.hit_rate > uniform.hit_rate);
}

#[test]
fn bad_config_is_an_error() {
    for (config, message) in [
        (
            SimConfig { workers: 0, ..small() },
            "invalid simulation config: `workers` must be at least 1",
        ),
        (
            SimConfig { slots: 0, ..small() },
            "invalid simulation config: `slots` must be at least 1",
        ),
        (
            SimConfig { job_ticks: (5, 1), ..small() },
            "invalid simulation config: `job_ticks` must be (min, max) with 1 <= min <= max",
        ),
    ] {
        assert_eq!(simulate(&config).unwrap_err().to_string(), message);
    }
    assert!(matches!(
        simulate(&SimConfig { weights: Weights { load: -1.0, ..Weights::default() }, ..small() }),
        Err(SimError::Scheduler(_))
    ));
}

#[test]
fn tuner_keeps_every_trial_and_finds_the_best() {
    let config = TuneConfig { budget: 8, search: Search::Random, ..TuneConfig::default() };
    let result = tune(&SimConfig { jobs: 500, ..small() }, &config).unwrap();
    assert_eq!(result.trials.len(), 8);
    let best = result.best().objective;
    assert!(result.trials.iter().all(|t| t.objective <= best));
    let objective = Objective::default();
    let t = result.best();
    assert!(
        (t.objective - (t.hit_rate - t.cache_cv - t.load_cv) * objective.hit_rate_weight).abs()
            < 1e-9
    );

    let mut csv = Vec::new();
    result.write_csv(&mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert_eq!(csv.lines().count(), 9);
    assert!(
        csv.starts_with("load,has_cache,total_caches,hit_rate,cache_cv,load_cv,objective,best\n")
    );
    assert_eq!(csv.lines().filter(|l| l.ends_with(",true")).count(), 1);
    let svg = result.svg();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<circle").count(), 2 * 8 + 2);

    let grid = tune(
        &SimConfig { jobs: 200, ..small() },
        &TuneConfig { budget: 27, search: Search::Grid, ..TuneConfig::default() },
    )
    .unwrap();
    assert_eq!(grid.trials.len(), 26, "3x3x3 grid without the all-zero point");
    assert!(tune(&small(), &TuneConfig { budget: 0, ..TuneConfig::default() }).is_err());
}
