//! A scheduling loop allocates nothing once warm: a decision's buffers go back to its thread
//! when it is dropped and serve the next one, and `pick` builds no decision at all.

use plus_core::{WorkerId, seeded_rng};
use plus_scheduler::{Candidate, Job, REFERENCE_WEIGHTS, Scheduler, WorkerKind};

fn fleet(n: usize) -> Vec<Candidate> {
    (0..n)
        .map(|i| {
            Candidate::new(WorkerId::new(format!("w{i}")).unwrap(), WorkerKind::Build)
                .with_load((i % 7) as f64 / 10.0)
                .with_project_cache(i % 3 == 0)
                .with_total_caches((i * 37 % 100) as u64)
        })
        .collect()
}

const JOB: Job<'static> = Job { kind: WorkerKind::Build, project: "api" };

#[test]
fn a_warm_decision_allocates_nothing() {
    let scheduler = Scheduler::with_weights(REFERENCE_WEIGHTS).unwrap();
    let mut rng = seeded_rng(1);
    for n in [10, 1_000] {
        let candidates = fleet(n);
        // The first decision on the thread makes the buffers.
        let first = scheduler.decide(&JOB, &candidates, &mut rng).unwrap().chosen_index();
        let info = allocation_counter::measure(|| {
            for _ in 0..100 {
                let decision = scheduler.decide(&JOB, &candidates, &mut rng).unwrap();
                assert_eq!(decision.chosen_index(), first);
            }
        });
        assert_eq!(info.count_total, 0, "{n} candidates: {info:?}");
    }
}

#[test]
fn pick_allocates_nothing_and_a_cold_decision_does() {
    let scheduler = Scheduler::with_weights(REFERENCE_WEIGHTS).unwrap();
    let mut rng = seeded_rng(1);
    let candidates = fleet(10);
    let info = allocation_counter::measure(|| {
        scheduler.pick(&JOB, &candidates, &mut rng).unwrap();
    });
    assert_eq!(info.count_total, 0, "{info:?}");
    // Two decisions alive at once: the second has no spare buffers to take (the count is
    // not a figure the test could not fail).
    let info = allocation_counter::measure(|| {
        let a = scheduler.decide(&JOB, &candidates, &mut rng).unwrap();
        let b = scheduler.decide(&JOB, &candidates, &mut rng).unwrap();
        assert_eq!(a.chosen_index(), b.chosen_index());
    });
    assert!(info.count_total > 0, "{info:?}");
}
