//! The fleet: liveness from heartbeats and ticks, reservations, caches per job, lost jobs.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use plus_core::{Timestamp, WorkerId, seeded_rng};
use plus_scheduler::{
    Error, Fleet, FleetConfig, FleetError, FleetJobId, Heartbeat, Job, Liveness, REFERENCE_WEIGHTS,
    Scheduler, SuspectPolicy, WorkerKind,
};
use proptest::prelude::*;

fn id(n: usize) -> WorkerId {
    WorkerId::new(format!("w{n:03}")).unwrap()
}

fn config() -> FleetConfig {
    FleetConfig {
        heartbeat_interval: Duration::from_secs(5),
        dead_after: Duration::from_secs(15),
        ..FleetConfig::default()
    }
}

fn fleet(workers: usize, capacity: Option<u32>) -> Fleet {
    let mut fleet = Fleet::new(config()).unwrap();
    for n in 0..workers {
        fleet.register(id(n), WorkerKind::Build, capacity, Timestamp::ZERO).unwrap();
    }
    fleet
}

fn scheduler() -> Scheduler {
    Scheduler::with_weights(REFERENCE_WEIGHTS).unwrap()
}

const fn at(secs: u64) -> Timestamp {
    Timestamp::from_millis(secs * 1_000)
}

fn build(project: &str) -> Job<'_> {
    Job { kind: WorkerKind::Build, project }
}

#[test]
fn back_to_back_decisions_spread_over_identical_workers() {
    let mut fleet = fleet(10, Some(4));
    let mut rng = seeded_rng(1);
    let chosen: HashSet<WorkerId> = (0..10)
        .map(|_| fleet.assign(&scheduler(), &build("api"), &mut rng).unwrap().worker)
        .collect();
    assert_eq!(chosen.len(), 10, "each decision saw the slots the earlier ones reserved");
    assert_eq!(fleet.assigned(), 10);
}

#[test]
fn the_cache_dimension_follows_each_job_project() {
    // One fleet, three projects, each cached on another worker: each goes to its cache.
    // Every worker equally loaded and holding two caches; only the job's project differs.
    let mut fleet = fleet(6, Some(8));
    let holder = |n: usize| match n {
        1 => "api",
        3 => "web",
        5 => "db",
        _ => "other",
    };
    for n in 0..6 {
        let caches = vec![holder(n).to_owned(), format!("misc-{n}")];
        fleet.heartbeat(&id(n), Heartbeat { load: 0.2, caches: Some(caches) }, at(1)).unwrap();
    }
    let mut rng = seeded_rng(2);
    for (n, project) in [(1, "api"), (3, "web"), (5, "db")] {
        let placed = fleet.assign(&scheduler(), &build(project), &mut rng).unwrap();
        assert_eq!(placed.worker, id(n), "{project}");
    }
    // The flags were for those jobs only.
    assert!(fleet.candidates(WorkerKind::Build).iter().all(|c| !c.has_project_cache));
}

#[test]
fn suspects_rank_after_healthy_workers_or_are_excluded() {
    for policy in [SuspectPolicy::RankLast, SuspectPolicy::Exclude] {
        let mut fleet = Fleet::new(FleetConfig { suspects: policy, ..config() }).unwrap();
        fleet.register(id(0), WorkerKind::Build, Some(1), at(0)).unwrap();
        fleet.register(id(1), WorkerKind::Build, Some(1), at(0)).unwrap();
        // Worker 1 is idle and would win, but it misses a heartbeat.
        fleet.heartbeat(&id(0), Heartbeat { load: 0.9, caches: None }, at(6)).unwrap();
        assert!(fleet.tick(at(6)).is_empty());
        assert_eq!(fleet.liveness(&id(1)), Some(Liveness::Suspect));
        let mut rng = seeded_rng(3);
        let first = fleet.assign(&scheduler(), &build("api"), &mut rng).unwrap();
        assert_eq!((first.worker.clone(), first.suspect), (id(0), false));
        // The healthy one is full now.
        let second = fleet.assign(&scheduler(), &build("api"), &mut rng);
        match policy {
            SuspectPolicy::RankLast => {
                let second = second.unwrap();
                assert_eq!((second.worker, second.suspect), (id(1), true));
            }
            _ => assert!(matches!(second, Err(FleetError::Unplaced(Error::NoneAdmitted { .. })))),
        }
        // A heartbeat makes it healthy at once.
        fleet.heartbeat(&id(1), Heartbeat::default(), at(7)).unwrap();
        assert_eq!(fleet.liveness(&id(1)), Some(Liveness::Healthy));
    }
}

#[test]
fn a_dead_worker_gives_its_jobs_back_and_must_register_again() {
    let mut fleet = fleet(2, Some(4));
    let mut rng = seeded_rng(4);
    let jobs: Vec<_> =
        (0..4).map(|_| fleet.assign(&scheduler(), &build("api"), &mut rng).unwrap()).collect();
    fleet.heartbeat(&id(0), Heartbeat::default(), at(10)).unwrap();
    let lost = fleet.tick(at(16));
    let on_1: Vec<FleetJobId> = jobs.iter().filter(|a| a.worker == id(1)).map(|a| a.job).collect();
    assert!(!on_1.is_empty());
    let mut lost_ids: Vec<FleetJobId> = lost.iter().map(|l| l.job).collect();
    lost_ids.sort();
    assert_eq!(lost_ids, on_1);
    assert!(lost.iter().all(|l| l.worker == id(1) && l.project == "api"));
    assert_eq!(fleet.liveness(&id(1)), Some(Liveness::Dead));
    assert_eq!(fleet.finish(on_1[0]), Err(FleetError::UnknownJob(on_1[0].0)));
    assert_eq!(
        fleet.heartbeat(&id(1), Heartbeat::default(), at(17)),
        Err(FleetError::DeclaredDead(id(1)))
    );
    assert!(fleet.candidates(WorkerKind::Build).iter().all(|c| c.id != id(1)));
    fleet.register(id(1), WorkerKind::Build, Some(4), at(18)).unwrap();
    assert_eq!(fleet.liveness(&id(1)), Some(Liveness::Healthy));
    assert_eq!(fleet.candidates(WorkerKind::Build).len(), 2);
}

#[test]
fn bad_input_is_a_typed_error() {
    let mut fleet = fleet(1, None);
    let ghost = WorkerId::new("ghost").unwrap();
    assert_eq!(
        fleet.heartbeat(&ghost, Heartbeat::default(), at(1)),
        Err(FleetError::UnknownWorker(ghost.clone()))
    );
    for load in [-0.1, f64::NAN, f64::INFINITY] {
        let err = fleet.heartbeat(&id(0), Heartbeat { load, caches: None }, at(1)).unwrap_err();
        assert!(matches!(err, FleetError::InvalidLoad { .. }), "{err}");
    }
    assert_eq!(
        fleet.register(ghost.clone(), WorkerKind::Build, Some(0), at(1)),
        Err(FleetError::ZeroCapacity(ghost))
    );
    assert_eq!(fleet.finish(FleetJobId(99)), Err(FleetError::UnknownJob(99)));
    let bad = FleetConfig { dead_after: Duration::from_secs(1), ..config() };
    assert!(matches!(Fleet::new(bad), Err(FleetError::Config(_))));
    let bad = FleetConfig { heartbeat_interval: Duration::ZERO, ..config() };
    assert!(matches!(Fleet::new(bad), Err(FleetError::Config(_))));
    let bad = FleetConfig { load_per_job: f64::NAN, ..config() };
    assert!(matches!(Fleet::new(bad), Err(FleetError::Config(_))));
    let mut rng = seeded_rng(5);
    let deploy = Job { kind: WorkerKind::Deploy, project: "api" };
    assert!(matches!(
        fleet.assign(&scheduler(), &deploy, &mut rng),
        Err(FleetError::Unplaced(Error::NoCandidates))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A worker heard from within `dead_after` is never declared dead; a silent one is
    /// declared dead by the first tick `dead_after` after it was last heard from, so within
    /// `dead_after` plus one tick period.
    #[test]
    fn liveness_follows_heartbeats(
        workers in 1usize..12,
        tick_ms in 100u64..3_000,
        beats in proptest::collection::vec((0usize..12, 0u64..300), 0..200),
    ) {
        let config = config();
        let mut fleet = Fleet::new(config.clone()).unwrap();
        for n in 0..workers {
            fleet.register(id(n), WorkerKind::Build, None, Timestamp::ZERO).unwrap();
        }
        // Heartbeats at whole tenths of a second, ticks every `tick_ms`, over 60 s.
        let mut beats: Vec<(u64, usize)> =
            beats.into_iter().map(|(w, t)| (t * 200, w % workers)).collect();
        beats.sort_unstable();
        let mut last_heard = vec![0u64; workers];
        let mut dead = vec![false; workers];
        let mut next_beat = 0;
        let mut now = 0;
        while now <= 60_000 {
            while next_beat < beats.len() && beats[next_beat].0 <= now {
                let (t, w) = beats[next_beat];
                next_beat += 1;
                if dead[w] {
                    continue;
                }
                fleet.heartbeat(&id(w), Heartbeat::default(), Timestamp::from_millis(t)).unwrap();
                last_heard[w] = last_heard[w].max(t);
            }
            fleet.tick(Timestamp::from_millis(now));
            let dead_after = config.dead_after.as_millis() as u64;
            for w in 0..workers {
                let liveness = fleet.liveness(&id(w)).unwrap();
                let silence = now.saturating_sub(last_heard[w]);
                if silence <= dead_after {
                    prop_assert_ne!(liveness, Liveness::Dead, "w{} heard {} ms ago", w, silence);
                } else {
                    prop_assert_eq!(liveness, Liveness::Dead, "w{} silent {} ms", w, silence);
                    prop_assert!(silence <= dead_after + tick_ms || dead[w]);
                    dead[w] = true;
                }
                if silence <= config.heartbeat_interval.as_millis() as u64 {
                    prop_assert_eq!(liveness, Liveness::Healthy);
                }
            }
            now += tick_ms;
        }
    }

    /// Every slot a worker shows is a job assigned to it and not finished or lost; no worker
    /// runs more than its capacity; every job ends exactly once, finished or lost.
    #[test]
    fn reservations_add_up(ops in proptest::collection::vec((0u8..5, 0usize..8, 0usize..64), 1..300)) {
        let mut fleet = fleet(8, Some(3));
        let scheduler = scheduler();
        let mut rng = seeded_rng(9);
        let mut open: HashMap<FleetJobId, WorkerId> = HashMap::new();
        let mut ended: HashSet<FleetJobId> = HashSet::new();
        let mut now = 0u64;
        let projects = ["api", "web", "db"];
        for (op, worker, pick) in ops {
            match op {
                0 | 1 => {
                    match fleet.assign(&scheduler, &build(projects[pick % 3]), &mut rng) {
                        Ok(placed) => {
                            prop_assert!(open.insert(placed.job, placed.worker).is_none());
                        }
                        Err(FleetError::Unplaced(_)) => {
                            // Only when every live worker is full.
                            let full = fleet.candidates(WorkerKind::Build).iter()
                                .all(|c| Some(c.running_jobs) >= c.capacity);
                            prop_assert!(full);
                        }
                        Err(err) => prop_assert!(false, "{}", err),
                    }
                }
                2 => {
                    let mut ids: Vec<FleetJobId> = open.keys().copied().collect();
                    ids.sort();
                    if let Some(&job) = ids.get(pick % ids.len().max(1)) {
                        fleet.finish(job).unwrap();
                        open.remove(&job);
                        prop_assert!(ended.insert(job));
                        prop_assert!(fleet.finish(job).is_err());
                    }
                }
                3 => {
                    let beat = Heartbeat {
                        load: (pick as f64) / 64.0,
                        caches: (pick % 2 == 0).then(|| vec![projects[pick % 3].to_owned()]),
                    };
                    match fleet.heartbeat(&id(worker), beat, Timestamp::from_millis(now)) {
                        Ok(()) => {}
                        Err(FleetError::DeclaredDead(_)) => {
                            fleet.register(id(worker), WorkerKind::Build, Some(3),
                                Timestamp::from_millis(now)).unwrap();
                        }
                        Err(err) => prop_assert!(false, "{}", err),
                    }
                }
                _ => {
                    now += (pick as u64) * 500;
                    for lost in fleet.tick(Timestamp::from_millis(now)) {
                        prop_assert_eq!(open.remove(&lost.job), Some(lost.worker));
                        prop_assert!(ended.insert(lost.job));
                    }
                }
            }
            prop_assert_eq!(fleet.assigned(), open.len());
            for n in 0..8 {
                let mine = open.values().filter(|w| **w == id(n)).count();
                prop_assert_eq!(fleet.jobs_of(&id(n)).len(), mine);
                prop_assert!(mine <= 3);
                if let Some(c) = fleet.candidates(WorkerKind::Build).iter().find(|c| c.id == id(n)) {
                    prop_assert_eq!(c.running_jobs as usize, mine);
                    prop_assert_ne!(fleet.liveness(&id(n)), Some(Liveness::Dead));
                } else {
                    prop_assert_eq!(fleet.liveness(&id(n)), Some(Liveness::Dead));
                }
            }
            // Healthy ones first in the pool.
            let order: Vec<bool> = fleet.candidates(WorkerKind::Build).iter()
                .map(|c| fleet.liveness(&c.id) == Some(Liveness::Healthy)).collect();
            prop_assert!(order.windows(2).all(|w| w[0] || !w[1]), "{:?}", order);
        }
    }
}
