//! Scoring: the source talk's worked example, the normalization rules, filters, errors and ties.

use plus_core::{WorkerId, seeded_rng};
use plus_scheduler::{
    Candidate, Dimension, Direction, Error, Filter, Job, REFERENCE_WEIGHTS, Rejection, Scheduler,
    TieBreak, Weights, WorkerKind,
};

fn worker(id: &str, load: f64, has_cache: bool, caches: u64) -> Candidate {
    Candidate::new(WorkerId::new(id).unwrap(), WorkerKind::Build)
        .with_load(load)
        .with_project_cache(has_cache)
        .with_total_caches(caches)
}

const JOB: Job<'static> = Job { kind: WorkerKind::Build, project: "release-5331" };

fn reference_fleet() -> Vec<Candidate> {
    vec![
        worker("worker1", 2.0 / 20.0, false, 100),
        worker("worker2", 6.0 / 20.0, true, 2000),
        worker("worker3", 7.0 / 20.0, false, 500),
        worker("worker4", 9.0 / 20.0, false, 300),
        worker("worker5", 1.0 / 20.0, false, 1300),
    ]
}

/// Talk 000's table, recomputed from its own formula. The seed printed 0.67 / 0.25 / 0.125 / 0 / 1
/// for the load column; the formula `1 - (v - min) / (max - min)` over loads 1/20..9/20 gives
/// 0.875 / 0.375 / 0.25 / 0 / 1. `plus` follows the formula; the ranking is the source talk's.
#[test]
fn seed_worked_example_follows_the_formula() {
    let fleet = reference_fleet();
    let scheduler = Scheduler::with_weights(REFERENCE_WEIGHTS).unwrap();
    let decision = scheduler.decide(&JOB, &fleet, &mut seeded_rng(1)).unwrap();
    let ranking = decision.ranking();
    let order: Vec<&str> = ranking.iter().map(|r| r.candidate.id.as_str()).collect();
    assert_eq!(order, ["worker1", "worker2", "worker5", "worker3", "worker4"]);

    // (worker, load normalized, has-cache normalized, total-caches normalized)
    let expected = [
        ("worker1", 0.875, 0.0, 1.0),
        ("worker2", 0.375, 1.0, 0.0),
        ("worker5", 1.0, 0.0, 1.0 - 1200.0 / 1900.0),
        ("worker3", 0.25, 0.0, 1.0 - 400.0 / 1900.0),
        ("worker4", 0.0, 0.0, 1.0 - 200.0 / 1900.0),
    ];
    for (row, (id, load, cache, total)) in ranking.iter().zip(expected) {
        assert_eq!(row.candidate.id.as_str(), id);
        let norms: Vec<f64> = row.dimensions.iter().map(|d| d.normalized).collect();
        for (got, want) in norms.iter().zip([load, cache, total]) {
            assert!((got - want).abs() < 1e-12, "{id}: {norms:?}");
        }
        let total_score = 35.0 * load + 50.0 * cache + 34.0 * total;
        assert!((row.total - total_score).abs() < 1e-9, "{id}: {} vs {total_score}", row.total);
        let weighted: f64 = row.dimensions.iter().map(|d| d.weighted).sum();
        assert!((weighted - row.total).abs() < 1e-9);
    }
    assert!((ranking[0].total - 64.625).abs() < 1e-9);
    assert!((ranking[1].total - 63.125).abs() < 1e-9);
    assert_eq!(decision.dimension_names(), ["load", "has_cache", "total_caches"]);
}

#[test]
fn all_equal_dimension_gives_everyone_one() {
    let fleet = vec![worker("a", 0.5, false, 10), worker("b", 0.5, false, 20)];
    let scheduler = Scheduler::with_weights(REFERENCE_WEIGHTS).unwrap();
    let decision = scheduler.decide(&JOB, &fleet, &mut seeded_rng(1)).unwrap();
    for row in decision.ranking() {
        assert_eq!(row.dimensions[0].normalized, 1.0);
        assert_eq!(row.dimensions[1].normalized, 1.0);
    }
    assert_eq!(decision.chosen().id.as_str(), "a");
    assert!((decision.score() - (35.0 + 50.0 + 34.0)).abs() < 1e-9);
}

#[test]
fn log_line_explains() {
    let fleet = reference_fleet();
    let scheduler = Scheduler::with_weights(REFERENCE_WEIGHTS).unwrap();
    let line = scheduler.decide(&JOB, &fleet, &mut seeded_rng(1)).unwrap().log_line(2);
    assert!(
        line.starts_with("project=release-5331 chose=worker1 score=64.625 tied=1 candidates=5 rejected=0 | worker1 64.625 [load=0.1->0.875=30.625 has_cache=0->0.000=0.000 total_caches=100->1.000=34.000] | worker2 63.125"),
        "{line}"
    );
}

#[test]
fn filters_remove_wrong_kind_full_and_host_rejected() {
    #[derive(Debug)]
    struct NotWorker3;
    impl Filter for NotWorker3 {
        fn name(&self) -> &str {
            "maintenance"
        }
        fn admits(&self, _: &Job<'_>, c: &Candidate) -> bool {
            c.id.as_str() != "worker3"
        }
    }
    let mut fleet = reference_fleet();
    fleet[0].kind = WorkerKind::Deploy;
    fleet[1].capacity = Some(3);
    fleet[1].running_jobs = 3;
    let scheduler =
        Scheduler::builder().weights(REFERENCE_WEIGHTS).filter(NotWorker3).build().unwrap();
    let decision = scheduler.decide(&JOB, &fleet, &mut seeded_rng(1)).unwrap();
    let rejected: Vec<(&str, Rejection)> =
        decision.rejected().map(|(c, r)| (c.id.as_str(), r.clone())).collect();
    assert_eq!(
        rejected,
        [
            ("worker1", Rejection::WrongKind),
            ("worker2", Rejection::AtCapacity),
            ("worker3", Rejection::Filter("maintenance".into()))
        ]
    );
    assert_eq!(decision.ranking().len(), 2);
    let all_out = Scheduler::builder()
        .weights(REFERENCE_WEIGHTS)
        .filter(NotWorker3)
        .build()
        .unwrap()
        .decide(&Job { kind: WorkerKind::Offline, project: "p" }, &fleet, &mut seeded_rng(1))
        .unwrap_err();
    assert_eq!(all_out, Error::NoneAdmitted { total: 5, summary: "5 wrong kind".into() });
    assert_eq!(all_out.to_string(), "none of the 5 candidates can take the job (5 wrong kind)");
}

#[test]
fn host_dimension_takes_part() {
    #[derive(Debug)]
    struct DiskFree;
    impl Dimension for DiskFree {
        fn name(&self) -> &str {
            "disk_free_gb"
        }
        fn direction(&self) -> Direction {
            Direction::LargerIsBetter
        }
        fn value(&self, _: &Job<'_>, c: &Candidate) -> f64 {
            if c.id.as_str() == "worker4" { 1000.0 } else { 10.0 }
        }
    }
    let fleet = reference_fleet();
    let scheduler =
        Scheduler::builder().weights(REFERENCE_WEIGHTS).dimension(DiskFree, 100.0).build().unwrap();
    let decision = scheduler.decide(&JOB, &fleet, &mut seeded_rng(1)).unwrap();
    assert_eq!(decision.chosen().id.as_str(), "worker4");
    assert_eq!(decision.explain_chosen().dimensions[3].name, "disk_free_gb");
}

#[test]
fn bad_input_is_a_typed_error() {
    let check = |weights: Weights, want: Error| {
        assert_eq!(Scheduler::with_weights(weights).unwrap_err(), want);
    };
    check(
        Weights { load: -1.0, ..REFERENCE_WEIGHTS },
        Error::InvalidWeight { dimension: "load".into(), weight: -1.0 },
    );
    assert!(matches!(
        Scheduler::with_weights(Weights { has_cache: f64::NAN, ..REFERENCE_WEIGHTS }),
        Err(Error::InvalidWeight { .. })
    ));
    check(Weights { load: 0.0, has_cache: 0.0, total_caches: 0.0 }, Error::AllZeroWeights);

    let scheduler = Scheduler::with_weights(REFERENCE_WEIGHTS).unwrap();
    let mut rng = seeded_rng(1);
    assert_eq!(scheduler.decide(&JOB, &[], &mut rng).unwrap_err(), Error::NoCandidates);
    let nan = [worker("a", f64::NAN, false, 1), worker("b", 0.1, false, 1)];
    let err = scheduler.decide(&JOB, &nan, &mut rng).unwrap_err();
    assert_eq!(err.to_string(), "dimension `load` of worker `a` is NaN, not a finite number");
    let inf = [worker("a", 0.1, false, 1), worker("b", f64::INFINITY, false, 1)];
    assert!(matches!(scheduler.decide(&JOB, &inf, &mut rng), Err(Error::InvalidMetric { .. })));
    let negative = [worker("a", 0.1, false, 1), worker("b", -0.1, false, 1)];
    assert_eq!(
        scheduler.decide(&JOB, &negative, &mut rng).unwrap_err(),
        Error::NegativeLoad { worker: WorkerId::new("b").unwrap(), value: -0.1 }
    );
}

#[test]
fn ties_follow_the_rule_and_the_seed() {
    let fleet: Vec<Candidate> =
        ["w3", "w1", "w2"].iter().map(|id| worker(id, 0.1, false, 5)).collect();
    let by_rule = |rule| {
        let s = Scheduler::builder().weights(REFERENCE_WEIGHTS).tie_break(rule).build().unwrap();
        s.decide(&JOB, &fleet, &mut seeded_rng(1)).unwrap().chosen().id.to_string()
    };
    assert_eq!(by_rule(TieBreak::LowestId), "w1");
    assert_eq!(by_rule(TieBreak::InputOrder), "w3");
    let scheduler = Scheduler::with_weights(REFERENCE_WEIGHTS).unwrap();
    let picks = |seed| {
        let mut rng = seeded_rng(seed);
        (0..30)
            .map(|_| scheduler.decide(&JOB, &fleet, &mut rng).unwrap().chosen_index())
            .collect::<Vec<_>>()
    };
    assert_eq!(picks(9), picks(9));
    let spread = picks(9);
    assert!(
        (0..3).all(|i| spread.contains(&i)),
        "random ties should reach every tied worker: {spread:?}"
    );
    assert_eq!(scheduler.decide(&JOB, &fleet, &mut seeded_rng(1)).unwrap().tied(), 3);
}

mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn fleet() -> impl Strategy<Value = Vec<Candidate>> {
        prop::collection::vec((0.0f64..2.0, any::<bool>(), 0u64..5000), 1..40).prop_map(|rows| {
            rows.into_iter()
                .enumerate()
                .map(|(i, (load, cache, caches))| worker(&format!("w{i:03}"), load, cache, caches))
                .collect()
        })
    }

    fn weights() -> impl Strategy<Value = Weights> {
        (0.0f64..100.0, 0.0f64..100.0, 0.1f64..100.0)
            .prop_map(|(load, has_cache, total_caches)| Weights { load, has_cache, total_caches })
    }

    /// The built-in dimensions re-implemented as host dimensions, to drive the general path.
    #[derive(Debug)]
    struct Host(&'static str, Direction, fn(&Candidate) -> f64);
    impl Dimension for Host {
        fn name(&self) -> &str {
            self.0
        }
        fn direction(&self) -> Direction {
            self.1
        }
        fn value(&self, _: &Job<'_>, c: &Candidate) -> f64 {
            (self.2)(c)
        }
    }

    proptest! {
        #[test]
        fn fast_path_and_general_path_agree(mut fleet in fleet(), w in weights(), full in prop::collection::vec(any::<bool>(), 40)) {
            for (c, full) in fleet.iter_mut().zip(full) {
                c.capacity = Some(4);
                c.running_jobs = if full { 4 } else { 1 };
            }
            let fast = Scheduler::builder().weights(w).tie_break(TieBreak::LowestId).build().unwrap();
            let general = Scheduler::builder()
                .dimension(Host("l", Direction::SmallerIsBetter, |c| c.load), w.load)
                .dimension(Host("h", Direction::LargerIsBetter, |c| f64::from(u8::from(c.has_project_cache))), w.has_cache)
                .dimension(Host("t", Direction::SmallerIsBetter, |c| c.total_caches as f64), w.total_caches)
                .tie_break(TieBreak::LowestId)
                .build()
                .unwrap();
            let a = fast.decide(&JOB, &fleet, &mut seeded_rng(0));
            let b = general.decide(&JOB, &fleet, &mut seeded_rng(0));
            match (a, b) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(a.chosen_index(), b.chosen_index());
                    let (ra, rb) = (a.ranking(), b.ranking());
                    prop_assert_eq!(ra.len(), rb.len());
                    for (x, y) in ra.iter().zip(&rb) {
                        prop_assert!((x.total - y.total).abs() <= 1e-9 * x.total.abs().max(1.0));
                        for (dx, dy) in x.dimensions.iter().zip(&y.dimensions) {
                            prop_assert_eq!(dx.raw, dy.raw);
                        }
                    }
                    prop_assert_eq!(a.rejected().count(), b.rejected().count());
                }
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert!(false, "paths disagree: {:?} vs {:?}", a.map(|d| d.chosen_index()), b.map(|d| d.chosen_index())),
            }
        }

        #[test]
        fn pick_chooses_as_decide_does(
            mut fleet in prop::collection::vec((0.0f64..2.0, any::<bool>(), 0u64..5000, any::<bool>(), 0u8..3), 1..80),
            w in weights(),
            seed in any::<u64>(),
            rule in 0u8..3,
            quantized in any::<bool>(),
        ) {
            let tie_break = [TieBreak::InputOrder, TieBreak::LowestId, TieBreak::Random][usize::from(rule)];
            let scheduler = Scheduler::builder().weights(w).tie_break(tie_break).build().unwrap();
            // Coarse loads make ties common, so every tie-break rule is exercised.
            let candidates: Vec<Candidate> = fleet
                .drain(..)
                .enumerate()
                .map(|(i, (load, cache, caches, full, kind))| {
                    let load = if quantized { (load * 2.0).round() / 2.0 } else { load };
                    let mut c = worker(&format!("w{i:03}"), load, cache, if quantized { caches % 3 } else { caches });
                    c.capacity = Some(4);
                    c.running_jobs = if full && kind == 0 { 4 } else { 1 };
                    c
                })
                .collect();
            let (mut rng_a, mut rng_b) = (seeded_rng(seed), seeded_rng(seed));
            let decided = scheduler.decide(&JOB, &candidates, &mut rng_a).map(|d| d.chosen_index());
            let picked = scheduler.pick(&JOB, &candidates, &mut rng_b);
            prop_assert_eq!(&decided, &picked);
            // And the RNG was used alike: the next draws agree.
            prop_assert_eq!(rng_a.random::<u64>(), rng_b.random::<u64>());
        }

        #[test]
        fn chosen_has_the_best_score_and_normalized_values_are_in_range(fleet in fleet(), w in weights(), seed in any::<u64>()) {
            let scheduler = Scheduler::with_weights(w).unwrap();
            let decision = scheduler.decide(&JOB, &fleet, &mut seeded_rng(seed)).unwrap();
            let ranking = decision.ranking();
            prop_assert!(decision.score() >= ranking[0].total - 1e-9 * ranking[0].total.abs().max(1.0));
            for row in &ranking {
                for d in &row.dimensions {
                    prop_assert!((0.0..=1.0).contains(&d.normalized), "{d:?}");
                }
                let sum: f64 = row.dimensions.iter().map(|d| d.weighted).sum();
                prop_assert!((sum - row.total).abs() <= 1e-9 * row.total.abs().max(1.0));
            }
        }

        #[test]
        fn order_of_candidates_does_not_matter_with_a_deterministic_rule(fleet in fleet(), w in weights(), rotate in 0usize..40) {
            let scheduler = Scheduler::builder().weights(w).tie_break(TieBreak::LowestId).build().unwrap();
            let a = scheduler.decide(&JOB, &fleet, &mut seeded_rng(0)).unwrap().chosen().id.clone();
            let mut rotated = fleet.clone();
            let len = rotated.len();
            rotated.rotate_left(rotate % len);
            let b = scheduler.decide(&JOB, &rotated, &mut seeded_rng(0)).unwrap().chosen().id.clone();
            prop_assert_eq!(a, b);
        }

        #[test]
        fn scaling_weights_does_not_change_the_choice(fleet in fleet(), w in weights(), k in 0.5f64..20.0) {
            let pick = |w: Weights| {
                let s = Scheduler::builder().weights(w).tie_break(TieBreak::LowestId).build().unwrap();
                s.decide(&JOB, &fleet, &mut seeded_rng(0)).unwrap().chosen().id.clone()
            };
            let scaled = Weights { load: w.load * k, has_cache: w.has_cache * k, total_caches: w.total_caches * k };
            prop_assert_eq!(pick(w), pick(scaled));
        }
    }
}

/// When no worker holds the project's cache the dimension cannot discriminate; the explanation
/// says so instead of showing every worker "scored 50" on it.
#[test]
fn a_dimension_that_cannot_discriminate_says_so() {
    let fleet = vec![worker("w1", 0.2, false, 3), worker("w2", 0.5, false, 7)];
    let scheduler = Scheduler::with_weights(REFERENCE_WEIGHTS).unwrap();
    let decision = scheduler.decide(&JOB, &fleet, &mut seeded_rng(1)).unwrap();
    let line = decision.log_line(2);
    assert!(line.contains("has_cache=0(all equal)"), "{line}");
    assert!(!line.contains("has_cache=0->"), "{line}");
    let chosen = decision.explain_chosen();
    let has_cache = chosen.dimensions.iter().find(|d| d.name == "has_cache").unwrap();
    assert!(!has_cache.discriminated);
    assert!(chosen.dimensions.iter().find(|d| d.name == "load").unwrap().discriminated);
}
