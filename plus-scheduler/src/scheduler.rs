use std::fmt::Write as _;
use std::ops::{Index, IndexMut};
use std::sync::Arc;

use rand::Rng;

use crate::candidate::{Candidate, Job};
use crate::dimension::{Builtin, Dimension, DimensionKind, Direction, Filter};
use crate::error::Error;

/// The Meituan Plus build platform talk's tuned weights: load 35, has-cache 50, total caches 34.
pub const REFERENCE_WEIGHTS: Weights = Weights { load: 35.0, has_cache: 50.0, total_caches: 34.0 };

/// Weights of the three built-in dimensions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Weight of `load` (smaller is better).
    pub load: f64,
    /// Weight of `has_cache` (having this project's cache is better).
    pub has_cache: f64,
    /// Weight of `total_caches` (fewer caches held is better).
    pub total_caches: f64,
}

impl Default for Weights {
    /// [`REFERENCE_WEIGHTS`].
    fn default() -> Self {
        REFERENCE_WEIGHTS
    }
}

impl Weights {
    /// Weights with `weight(dimension)` for each built-in dimension, asked in [`Builtin::ALL`]
    /// order.
    #[must_use]
    pub fn from_fn(mut weight: impl FnMut(Builtin) -> f64) -> Self {
        let mut weights = Weights { load: 0.0, has_cache: 0.0, total_caches: 0.0 };
        for dimension in Builtin::ALL {
            weights[dimension] = weight(dimension);
        }
        weights
    }

    /// Each built-in dimension with its weight, in [`Builtin::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Builtin, f64)> + '_ {
        Builtin::ALL.into_iter().map(|dimension| (dimension, self[dimension]))
    }
}

impl Index<Builtin> for Weights {
    type Output = f64;

    fn index(&self, dimension: Builtin) -> &f64 {
        match dimension {
            Builtin::Load => &self.load,
            Builtin::HasCache => &self.has_cache,
            Builtin::TotalCaches => &self.total_caches,
        }
    }
}

impl IndexMut<Builtin> for Weights {
    fn index_mut(&mut self, dimension: Builtin) -> &mut f64 {
        match dimension {
            Builtin::Load => &mut self.load,
            Builtin::HasCache => &mut self.has_cache,
            Builtin::TotalCaches => &mut self.total_caches,
        }
    }
}

/// How to choose among candidates whose scores are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TieBreak {
    /// Uniformly at random with the caller's RNG (the default): spreads work over equals.
    #[default]
    Random,
    /// The smallest worker id.
    LowestId,
    /// The first in the order the caller passed the candidates.
    InputOrder,
}

/// Scores are equal when they differ by less than this, relative to their size: sums of the same
/// terms in another order may differ in the last bits.
const TIE_EPSILON: f64 = 1e-9;

#[derive(Debug)]
struct WeightedDimension {
    kind: DimensionKind,
    weight: f64,
}

/// Places jobs on workers: filter, then score by normalized weighted dimensions (Meituan's Plus build platform talk).
///
/// For each dimension, raw values are normalized across the admitted candidates to
/// `(v - min) / (max - min)` (or one minus that when smaller is better); when every candidate has
/// the same value, every one gets 1.0. A candidate's score is the sum of weight x normalized
/// value; the highest wins, ties broken by [`TieBreak`].
#[derive(Debug)]
pub struct Scheduler {
    dimensions: Vec<WeightedDimension>,
    /// Whether the dimensions are the built-ins and nothing else, which the fast path scores.
    builtins_only: bool,
    /// Dimension names, shared with every decision.
    names: Arc<[String]>,
    filters: Vec<Box<dyn Filter>>,
    tie_break: TieBreak,
}

/// Builds a [`Scheduler`].
#[derive(Debug, Default)]
pub struct SchedulerBuilder {
    dimensions: Vec<WeightedDimension>,
    filters: Vec<Box<dyn Filter>>,
    tie_break: TieBreak,
}

impl SchedulerBuilder {
    /// Adds the built-in dimensions with `weights`.
    #[must_use]
    pub fn weights(mut self, weights: Weights) -> Self {
        self.dimensions.extend(
            weights
                .iter()
                .map(|(b, weight)| WeightedDimension { kind: DimensionKind::Builtin(b), weight }),
        );
        self
    }

    /// Adds a host-defined dimension with `weight`.
    #[must_use]
    pub fn dimension(mut self, dimension: impl Dimension + 'static, weight: f64) -> Self {
        self.dimensions
            .push(WeightedDimension { kind: DimensionKind::Custom(Box::new(dimension)), weight });
        self
    }

    /// Adds a host-defined filter, applied after the built-in kind and capacity filters.
    #[must_use]
    pub fn filter(mut self, filter: impl Filter + 'static) -> Self {
        self.filters.push(Box::new(filter));
        self
    }

    /// Sets the tie-break rule (default [`TieBreak::Random`]).
    #[must_use]
    pub fn tie_break(mut self, tie_break: TieBreak) -> Self {
        self.tie_break = tie_break;
        self
    }

    /// Validates the weights and builds the scheduler.
    ///
    /// # Errors
    /// [`Error::InvalidWeight`] for a negative, NaN or infinite weight, [`Error::AllZeroWeights`]
    /// when nothing would discriminate (or no dimension was added), and
    /// [`Error::DuplicateDimension`] when two dimensions share a name.
    pub fn build(self) -> Result<Scheduler, Error> {
        for (i, d) in self.dimensions.iter().enumerate() {
            if !d.weight.is_finite() || d.weight < 0.0 {
                return Err(Error::InvalidWeight {
                    dimension: d.kind.name().to_owned(),
                    weight: d.weight,
                });
            }
            if self.dimensions[..i].iter().any(|e| e.kind.name() == d.kind.name()) {
                return Err(Error::DuplicateDimension(d.kind.name().to_owned()));
            }
        }
        if self.dimensions.iter().all(|d| d.weight == 0.0) {
            return Err(Error::AllZeroWeights);
        }
        // Names are unique (checked above), so this means each built-in exactly once.
        let builtins_only = self.dimensions.len() == Builtin::ALL.len()
            && self.dimensions.iter().all(|d| matches!(d.kind, DimensionKind::Builtin(_)));
        let names = self.dimensions.iter().map(|d| d.kind.name().to_owned()).collect();
        Ok(Scheduler {
            dimensions: self.dimensions,
            builtins_only,
            names,
            filters: self.filters,
            tie_break: self.tie_break,
        })
    }
}

/// Why a candidate was filtered out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The worker is of another kind than the job needs.
    WrongKind,
    /// The worker runs as many jobs as its capacity allows.
    AtCapacity,
    /// A host-defined filter, by name, said no.
    Filter(String),
}

impl Scheduler {
    /// A builder with no dimensions yet.
    #[must_use]
    pub fn builder() -> SchedulerBuilder {
        SchedulerBuilder::default()
    }

    /// A scheduler with the three built-in dimensions and `weights`, random tie-break.
    ///
    /// # Errors
    /// As [`SchedulerBuilder::build`].
    pub fn with_weights(weights: Weights) -> Result<Self, Error> {
        Self::builder().weights(weights).build()
    }

    /// The tie-break rule in force.
    #[must_use]
    pub fn tie_break(&self) -> TieBreak {
        self.tie_break
    }

    #[inline]
    fn rejection(&self, job: &Job<'_>, c: &Candidate) -> Option<Rejection> {
        if c.kind != job.kind {
            return Some(Rejection::WrongKind);
        }
        if c.capacity.is_some_and(|cap| c.running_jobs >= cap) {
            return Some(Rejection::AtCapacity);
        }
        self.filters
            .iter()
            .find(|f| !f.admits(job, c))
            .map(|f| Rejection::Filter(f.name().to_owned()))
    }

    /// Chooses the best candidate for `job`.
    ///
    /// `rng` is used only to break ties under [`TieBreak::Random`]; with the same inputs and an
    /// RNG in the same state the choice is the same.
    ///
    /// # Errors
    /// [`Error::NoCandidates`], [`Error::NoneAdmitted`] (with the reasons), [`Error::NegativeLoad`]
    /// and [`Error::InvalidMetric`] for NaN or infinite values.
    pub fn decide<'c, R: Rng + ?Sized>(
        &self,
        job: &Job<'_>,
        candidates: &'c [Candidate],
        rng: &mut R,
    ) -> Result<Decision<'c>, Error> {
        if candidates.is_empty() {
            return Err(Error::NoCandidates);
        }
        let too_many = u32::try_from(candidates.len()).is_err();
        assert!(!too_many, "more than 4 billion candidates in one decision");
        let mut bounds = Bounds::default();
        let (admitted, rejected) = if self.builtins_only {
            self.filter(job, candidates, Some(&mut bounds))
        } else {
            self.filter(job, candidates, None)
        };
        if admitted.len == 0 {
            return Err(Error::NoneAdmitted {
                total: candidates.len(),
                summary: summarize(&rejected),
            });
        }
        let scoring = match (self.builtins_only, admitted.indices.as_deref()) {
            (true, None) => self.score_builtin(candidates.iter(), &bounds)?,
            (true, Some(indices)) => {
                self.score_builtin(indices.iter().map(|&i| &candidates[i as usize]), &bounds)?
            }
            (false, _) => self.score_generic(job, candidates, &admitted)?,
        };
        let Scoring { columns, raw, scores, mut project } = scoring;
        project.push_str(job.project);
        let (chosen, tied) = self.choose(&scores, |pos| &candidates[admitted.index(pos)].id, rng);
        let decision = Decision {
            job_project: project,
            candidates,
            admitted,
            rejected,
            names: self.names.clone(),
            columns,
            raw,
            scores,
            chosen,
            tied,
        };
        // The explanation costs a ranking; build it only for a subscriber that wants it.
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(explanation = %decision.log_line(3), "scheduling decision");
        }
        Ok(decision)
    }

    /// The index of the best candidate for `job`: the same choice as [`Scheduler::decide`]'s
    /// [`Decision::chosen_index`], with the same use of `rng`, for loops that only place and
    /// never explain. With the built-in dimensions only, up to [`Scheduler::PICK_INLINE`]
    /// candidates, every one admitted, it builds no decision: one pass gathers the ranges, one
    /// scores into a buffer on the stack. Otherwise it is `decide`, whose fixed costs matter
    /// little beside the passes over more candidates.
    ///
    /// # Errors
    /// As [`Scheduler::decide`].
    pub fn pick<R: Rng + ?Sized>(
        &self,
        job: &Job<'_>,
        candidates: &[Candidate],
        rng: &mut R,
    ) -> Result<usize, Error> {
        let slow = |rng: &mut R| self.decide(job, candidates, rng).map(|d| d.chosen_index());
        if !self.builtins_only || candidates.is_empty() || candidates.len() > Self::PICK_INLINE {
            return slow(rng);
        }
        let mut bounds = Bounds::default();
        let (admitted, _) = self.filter(job, candidates, Some(&mut bounds));
        if admitted.indices.is_some() || bounds.suspect() {
            // Some rejected (the decision says why none fit, if none do), or a bad value to
            // find and name.
            return slow(rng);
        }
        let (slopes, offset) = self.builtin_affine(&bounds, |_| {});
        let mut buffer = [0.0; Self::PICK_INLINE];
        let scores = &mut buffer[..candidates.len()];
        for (score, c) in scores.iter_mut().zip(candidates) {
            *score = builtin_score(c, &slopes, offset);
        }
        Ok(self.choose(scores, |i| &candidates[i].id, rng).0)
    }

    /// Most candidates [`Scheduler::pick`] scores without building a decision.
    pub const PICK_INLINE: usize = 16;

    /// The chosen position among `scores` under the tie-break, and how many tied for best.
    fn choose<'w, R: Rng + ?Sized>(
        &self,
        scores: &[f64],
        id_of: impl Fn(usize) -> &'w plus_core::WorkerId,
        rng: &mut R,
    ) -> (usize, usize) {
        // Not `fold(f64::max)`: a sequential max is one long dependency chain.
        let best = range(scores).1;
        let tolerance = TIE_EPSILON * best.abs().max(1.0);
        let is_tied = |s: f64| best - s <= tolerance;
        let tied = scores.iter().filter(|&&s| is_tied(s)).count();
        let chosen = match self.tie_break {
            TieBreak::InputOrder => scores.iter().position(|&s| is_tied(s)),
            TieBreak::LowestId => (0..scores.len())
                .filter(|&i| is_tied(scores[i]))
                .min_by(|&a, &b| id_of(a).cmp(id_of(b))),
            TieBreak::Random => {
                let pick = if tied > 1 { rng.random_range(0..tied) } else { 0 };
                (0..scores.len()).filter(|&i| is_tied(scores[i])).nth(pick)
            }
        }
        .expect("the best score is among the scores");
        (chosen, tied)
    }

    /// The built-in dimensions' scoring as one affine function of the candidates' fields:
    /// slopes by [`Builtin`] and one offset, each column passed to `column` as it is made.
    fn builtin_affine(
        &self,
        bounds: &Bounds,
        mut column: impl FnMut(Column),
    ) -> ([f64; Builtin::ALL.len()], f64) {
        let mut slopes = [0.0; Builtin::ALL.len()];
        let mut offset = 0.0;
        for dim in &self.dimensions {
            let DimensionKind::Builtin(builtin) = dim.kind else {
                unreachable!("the fast path scores built-in dimensions only")
            };
            let (min, max) = bounds.range(builtin);
            let made = Column::new(min, max, dim, Some(builtin));
            let (slope, off) = made.affine();
            slopes[builtin as usize] = slope;
            offset += off;
            column(made);
        }
        (slopes, offset)
    }

    /// Splits the candidates into admitted and rejected, and, when `bounds` is given, gathers the
    /// built-in dimensions' ranges in the same pass (each pass over the candidates costs about
    /// as much as the whole single-pass floor, so this one does double duty). While every
    /// candidate is admitted no index list is built.
    fn filter(
        &self,
        job: &Job<'_>,
        candidates: &[Candidate],
        bounds: Option<&mut Bounds>,
    ) -> (Admitted, Vec<(u32, Rejection)>) {
        let mut indices: Option<Vec<u32>> = None;
        let mut rejected = Vec::new();
        let mut len = 0;
        // Two accumulator sets, one per slot of a pair, so that consecutive comparisons do not
        // wait on each other.
        let mut even = Bounds::default();
        let mut odd = Bounds::default();
        let gather = bounds.is_some();
        let start = if gather && self.filters.is_empty() {
            let (prefix, prefix_bounds) = admitted_prefix(job, candidates);
            even = prefix_bounds;
            len = prefix;
            prefix
        } else {
            0
        };
        for (i, c) in candidates.iter().enumerate().skip(start) {
            let admit = c.kind == job.kind
                && c.capacity.is_none_or(|cap| c.running_jobs < cap)
                && (self.filters.is_empty() || self.filters.iter().all(|f| f.admits(job, c)));
            if admit {
                len += 1;
                if gather {
                    if i % 2 == 0 { even.add(c) } else { odd.add(c) }
                }
                if let Some(indices) = indices.as_mut() {
                    indices.push(i as u32);
                }
            } else {
                let reason =
                    self.rejection(job, c).expect("a candidate that is not admitted has a reason");
                indices.get_or_insert_with(|| {
                    let mut v = Vec::with_capacity(candidates.len());
                    v.extend(0..i as u32);
                    v
                });
                rejected.push((i as u32, reason));
            }
        }
        if let Some(bounds) = bounds {
            even.merge(&odd);
            *bounds = even;
        }
        (Admitted { indices, len }, rejected)
    }

    /// Scoring for the common configuration, the three built-in dimensions and nothing else:
    /// with the ranges gathered by [`Scheduler::filter`], one pass computes the scores from the
    /// candidates' fields directly. Raw values are not
    /// copied: explanations read them back from the candidates.
    fn score_builtin<'a>(
        &self,
        admitted: impl Iterator<Item = &'a Candidate> + Clone,
        bounds: &Bounds,
    ) -> Result<Scoring, Error> {
        if bounds.suspect() {
            // Find the first bad value with the dimensions' own checks.
            for c in admitted.clone() {
                for b in Builtin::ALL {
                    b.check(&c.id, b.value(c))?;
                }
            }
        }
        let Buffers { mut columns, mut scores, project } = Buffers::take();
        let (slopes, offset) = self.builtin_affine(bounds, |column| columns.push(column));
        scores.extend(admitted.map(|c| builtin_score(c, &slopes, offset)));
        Ok(Scoring { columns, raw: Vec::new(), scores, project })
    }

    /// Scoring for any configuration: each dimension's raw values gathered into a contiguous
    /// column, then ranges and scores column by column.
    fn score_generic(
        &self,
        job: &Job<'_>,
        candidates: &[Candidate],
        admitted: &Admitted,
    ) -> Result<Scoring, Error> {
        let n = admitted.len;
        let mut raw = Vec::with_capacity(n * self.dimensions.len());
        let Buffers { mut columns, mut scores, project } = Buffers::take();
        scores.resize(n, 0.0);
        for dim in &self.dimensions {
            let start = raw.len();
            raw.extend((0..n).map(|pos| dim.kind.value(job, &candidates[admitted.index(pos)])));
            let values = &raw[start..];
            for (pos, &value) in values.iter().enumerate() {
                dim.kind.check(&candidates[admitted.index(pos)].id, value)?;
            }
            let (min, max) = range(values);
            let column = Column::new(min, max, dim, None);
            let (slope, offset) = column.affine();
            for (s, &v) in scores.iter_mut().zip(values) {
                *s += slope * v + offset;
            }
            columns.push(column);
        }
        Ok(Scoring { columns, raw, scores, project })
    }
}

/// A candidate's score under the built-in dimensions' affine function.
#[inline(always)]
fn builtin_score(c: &Candidate, slopes: &[f64; Builtin::ALL.len()], offset: f64) -> f64 {
    let mut score = 0.0;
    for (b, slope) in Builtin::ALL.into_iter().zip(slopes) {
        score += slope * b.value(c);
    }
    score + offset
}

/// How many leading candidates pass the built-in filters, and their built-in ranges.
///
/// The common case (every worker of the right kind, none full, no host filters) runs entirely
/// here: a loop with no calls in it, so the two accumulator sets stay in registers. It stops at
/// the first pair with a rejected candidate and leaves the rest to the general loop.
fn admitted_prefix(job: &Job<'_>, candidates: &[Candidate]) -> (usize, Bounds) {
    let admit =
        |c: &Candidate| c.kind == job.kind && c.capacity.is_none_or(|cap| c.running_jobs < cap);
    let mut even = Bounds::default();
    let mut odd = Bounds::default();
    let mut done = 0;
    for pair in candidates.chunks_exact(2) {
        if !(admit(&pair[0]) && admit(&pair[1])) {
            break;
        }
        even.add(&pair[0]);
        odd.add(&pair[1]);
        done += 2;
    }
    even.merge(&odd);
    (done, even)
}

/// Running ranges of the three built-in dimensions, in the cheapest form for each: load as
/// floats, cache counts as integers, has-cache as two flags. Small enough to stay in registers
/// twice over (the filter keeps two sets).
#[derive(Clone, Copy)]
struct Bounds {
    load_lo: f64,
    load_hi: f64,
    total_lo: u64,
    total_hi: u64,
    any_cache: bool,
    any_miss: bool,
    bad: bool,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            load_lo: f64::INFINITY,
            load_hi: f64::NEG_INFINITY,
            total_lo: u64::MAX,
            total_hi: 0,
            any_cache: false,
            any_miss: false,
            bad: false,
        }
    }
}

impl Bounds {
    #[inline(always)]
    fn add(&mut self, c: &Candidate) {
        // NaN fails every comparison, so it never becomes a bound; `bad` reports it.
        self.bad |= !c.load.is_finite();
        self.load_lo = if c.load < self.load_lo { c.load } else { self.load_lo };
        self.load_hi = if c.load > self.load_hi { c.load } else { self.load_hi };
        self.total_lo = self.total_lo.min(c.total_caches);
        self.total_hi = self.total_hi.max(c.total_caches);
        self.any_cache |= c.has_project_cache;
        self.any_miss |= !c.has_project_cache;
    }

    fn merge(&mut self, other: &Bounds) {
        self.bad |= other.bad;
        self.load_lo = self.load_lo.min(other.load_lo);
        self.load_hi = self.load_hi.max(other.load_hi);
        self.total_lo = self.total_lo.min(other.total_lo);
        self.total_hi = self.total_hi.max(other.total_hi);
        self.any_cache |= other.any_cache;
        self.any_miss |= other.any_miss;
    }

    /// Whether a value may be out of its dimension's bounds (NaN, infinite, negative load):
    /// then the dimensions' own checks find it.
    fn suspect(&self) -> bool {
        self.bad || self.load_lo < 0.0
    }

    /// `(min, max)` of `builtin`.
    fn range(&self, builtin: Builtin) -> (f64, f64) {
        match builtin {
            Builtin::Load => (self.load_lo, self.load_hi),
            Builtin::HasCache => {
                (if self.any_miss { 0.0 } else { 1.0 }, if self.any_cache { 1.0 } else { 0.0 })
            }
            Builtin::TotalCaches => (self.total_lo as f64, self.total_hi as f64),
        }
    }
}

/// Which candidates passed the filters: all of them (`indices` is `None`), or those listed.
#[derive(Debug, Clone)]
struct Admitted {
    indices: Option<Vec<u32>>,
    len: usize,
}

impl Admitted {
    /// The index in the caller's slice of the `pos`-th admitted candidate.
    #[inline]
    fn index(&self, pos: usize) -> usize {
        match &self.indices {
            None => pos,
            Some(indices) => indices[pos] as usize,
        }
    }
}

/// What scoring produced.
struct Scoring {
    columns: Vec<Column>,
    /// Dimension-major raw values (`raw[d * n + pos]`); empty when the columns are built-ins,
    /// whose raw values are read back from the candidates.
    raw: Vec<f64>,
    scores: Vec<f64>,
    /// An empty string for the decision's copy of the job's project.
    project: String,
}

/// A decision's buffers, kept for the next decision on the same thread when it is dropped:
/// in the steady state of a scheduling loop a decision allocates nothing (at 10 candidates
/// its three allocations cost far more than its scoring).
#[derive(Default)]
struct Buffers {
    columns: Vec<Column>,
    scores: Vec<f64>,
    project: String,
}

thread_local! {
    static SPARE: std::cell::Cell<Option<Buffers>> = const { std::cell::Cell::new(None) };
}

impl Buffers {
    /// Empty buffers: the thread's spare ones, or new ones.
    fn take() -> Self {
        SPARE.with(std::cell::Cell::take).unwrap_or_default()
    }

    /// Keeps `self` (emptied) as the thread's spare buffers, unless it already has some.
    fn give_back(mut self) {
        self.columns.clear();
        self.scores.clear();
        self.project.clear();
        SPARE.with(|spare| {
            let current = spare.take();
            spare.set(Some(current.unwrap_or(self)));
        });
    }
}

/// `(min, max)` of `values`; NaN never becomes a bound (it fails every comparison), and callers
/// reject NaN separately.
fn range(values: &[f64]) -> (f64, f64) {
    // Four independent accumulators so the compiler can keep several comparisons in flight.
    let mut lo = [f64::INFINITY; 4];
    let mut hi = [f64::NEG_INFINITY; 4];
    let mut chunks = values.chunks_exact(4);
    for chunk in &mut chunks {
        for j in 0..4 {
            lo[j] = if chunk[j] < lo[j] { chunk[j] } else { lo[j] };
            hi[j] = if chunk[j] > hi[j] { chunk[j] } else { hi[j] };
        }
    }
    for &v in chunks.remainder() {
        lo[0] = if v < lo[0] { v } else { lo[0] };
        hi[0] = if v > hi[0] { v } else { hi[0] };
    }
    let fold_lo = lo.iter().fold(f64::INFINITY, |a, &b| if b < a { b } else { a });
    let fold_hi = hi.iter().fold(f64::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    (fold_lo, fold_hi)
}

fn summarize(rejected: &[(u32, Rejection)]) -> String {
    let count =
        |want: &dyn Fn(&Rejection) -> bool| rejected.iter().filter(|(_, r)| want(r)).count();
    let mut parts = Vec::new();
    let wrong = count(&|r| *r == Rejection::WrongKind);
    if wrong > 0 {
        parts.push(format!("{wrong} wrong kind"));
    }
    let full = count(&|r| *r == Rejection::AtCapacity);
    if full > 0 {
        parts.push(format!("{full} at capacity"));
    }
    let mut filters: Vec<&str> = rejected
        .iter()
        .filter_map(
            |(_, r)| if let Rejection::Filter(name) = r { Some(name.as_str()) } else { None },
        )
        .collect();
    filters.sort_unstable();
    filters.dedup();
    for name in filters {
        let n = count(&|r| matches!(r, Rejection::Filter(f) if f == name));
        parts.push(format!("{n} rejected by `{name}`"));
    }
    parts.join(", ")
}

#[derive(Debug, Clone, Copy)]
struct Column {
    min: f64,
    max: f64,
    direction: Direction,
    weight: f64,
    builtin: Option<Builtin>,
}

impl Column {
    fn new(min: f64, max: f64, dim: &WeightedDimension, builtin: Option<Builtin>) -> Self {
        Self { min, max, direction: dim.kind.direction(), weight: dim.weight, builtin }
    }

    /// `weight x normalized(v)` as `slope x v + offset`.
    fn affine(&self) -> (f64, f64) {
        let span = self.max - self.min;
        if span > 0.0 {
            match self.direction {
                Direction::LargerIsBetter => (self.weight / span, -self.min * self.weight / span),
                Direction::SmallerIsBetter => {
                    (-self.weight / span, self.weight + self.min * self.weight / span)
                }
            }
        } else {
            (0.0, self.weight)
        }
    }

    fn normalize(&self, v: f64) -> f64 {
        let span = self.max - self.min;
        if span > 0.0 {
            let up = (v - self.min) / span;
            match self.direction {
                Direction::LargerIsBetter => up,
                Direction::SmallerIsBetter => 1.0 - up,
            }
        } else {
            1.0
        }
    }
}

/// One dimension's part in a candidate's score.
#[derive(Debug, Clone, PartialEq)]
pub struct DimensionScore {
    /// The dimension.
    pub name: String,
    /// The raw value.
    pub raw: f64,
    /// The normalized value in `[0, 1]`.
    pub normalized: f64,
    /// `weight x normalized`.
    pub weighted: f64,
    /// Whether the dimension told the candidates apart. When every candidate has the same raw
    /// value it cannot, and gives everyone full marks: `normalized` is then 1 for all and says
    /// nothing about this candidate (no worker holding the project's cache is not "scored 50").
    pub discriminated: bool,
}

/// How one candidate scored.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateScore<'c> {
    /// The candidate.
    pub candidate: &'c Candidate,
    /// Each dimension's part, in configuration order.
    pub dimensions: Vec<DimensionScore>,
    /// The total score.
    pub total: f64,
}

/// The outcome of [`Scheduler::decide`]: the chosen worker and everything needed to explain why.
///
/// Explanations are computed on demand from the raw values kept here, so a decision that nobody
/// explains costs only its scoring pass.
#[derive(Debug, Clone)]
pub struct Decision<'c> {
    job_project: String,
    candidates: &'c [Candidate],
    admitted: Admitted,
    rejected: Vec<(u32, Rejection)>,
    names: Arc<[String]>,
    columns: Vec<Column>,
    /// Dimension-major: `raw[d * n + i]` is dimension `d` of admitted candidate `i`; empty for
    /// built-in dimensions, read back from the candidates.
    raw: Vec<f64>,
    scores: Vec<f64>,
    chosen: usize,
    tied: usize,
}

impl Drop for Decision<'_> {
    fn drop(&mut self) {
        Buffers {
            columns: std::mem::take(&mut self.columns),
            scores: std::mem::take(&mut self.scores),
            project: std::mem::take(&mut self.job_project),
        }
        .give_back();
    }
}

impl<'c> Decision<'c> {
    /// The chosen candidate.
    #[must_use]
    pub fn chosen(&self) -> &'c Candidate {
        &self.candidates[self.admitted.index(self.chosen)]
    }

    /// The chosen candidate's index in the slice passed to [`Scheduler::decide`].
    #[must_use]
    pub fn chosen_index(&self) -> usize {
        self.admitted.index(self.chosen)
    }

    /// The chosen candidate's score.
    #[must_use]
    pub fn score(&self) -> f64 {
        self.scores[self.chosen]
    }

    /// How many candidates shared the best score (1 when there was no tie).
    #[must_use]
    pub fn tied(&self) -> usize {
        self.tied
    }

    /// The dimensions' names, in configuration order (the order of
    /// [`CandidateScore::dimensions`]).
    #[must_use]
    pub fn dimension_names(&self) -> &[String] {
        &self.names
    }

    /// Candidates filtered out, with the reason.
    pub fn rejected(&self) -> impl Iterator<Item = (&'c Candidate, &Rejection)> + '_ {
        self.rejected.iter().map(|(i, r)| (&self.candidates[*i as usize], r))
    }

    /// How `candidate_position`-th admitted candidate scored.
    fn explain_one(&self, pos: usize) -> CandidateScore<'c> {
        let n = self.admitted.len;
        let candidate = &self.candidates[self.admitted.index(pos)];
        let dimensions = self
            .columns
            .iter()
            .zip(self.names.iter())
            .enumerate()
            .map(|(d, (col, name))| {
                let raw = match col.builtin {
                    Some(builtin) => builtin.value(candidate),
                    None => self.raw[d * n + pos],
                };
                let normalized = col.normalize(raw);
                DimensionScore {
                    name: name.clone(),
                    raw,
                    normalized,
                    weighted: col.weight * normalized,
                    discriminated: col.max > col.min,
                }
            })
            .collect();
        CandidateScore { candidate, dimensions, total: self.scores[pos] }
    }

    /// Every admitted candidate's score, best first (ties in input order).
    #[must_use]
    pub fn ranking(&self) -> Vec<CandidateScore<'c>> {
        let mut order: Vec<usize> = (0..self.admitted.len).collect();
        order.sort_by(|&a, &b| self.scores[b].total_cmp(&self.scores[a]).then(a.cmp(&b)));
        order.into_iter().map(|pos| self.explain_one(pos)).collect()
    }

    /// The chosen candidate's explanation.
    #[must_use]
    pub fn explain_chosen(&self) -> CandidateScore<'c> {
        self.explain_one(self.chosen)
    }

    /// One log line: the choice, then each candidate (best first, at most `limit`) with each
    /// dimension as `name=raw->normalized=weighted`, or `name=raw(all equal)` for a dimension
    /// that could not tell the candidates apart (it adds the same to every score).
    ///
    /// `project=p chose=worker-1 score=64.625 tied=1 | worker-1 64.625 [load=0.1->0.875 ...]`
    #[must_use]
    pub fn log_line(&self, limit: usize) -> String {
        let mut out = format!(
            "project={} chose={} score={:.3} tied={} candidates={} rejected={}",
            self.job_project,
            self.chosen().id,
            self.score(),
            self.tied,
            self.admitted.len,
            self.rejected.len()
        );
        for row in self.ranking().into_iter().take(limit) {
            let _ = write!(out, " | {} {:.3} [", row.candidate.id, row.total);
            for (i, d) in row.dimensions.iter().enumerate() {
                let sep = if i == 0 { "" } else { " " };
                let _ = if d.discriminated {
                    write!(out, "{sep}{}={}->{:.3}={:.3}", d.name, d.raw, d.normalized, d.weighted)
                } else {
                    write!(out, "{sep}{}={}(all equal)", d.name, d.raw)
                };
            }
            out.push(']');
        }
        out
    }
}
