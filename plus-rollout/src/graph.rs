//! The application graph: validation, topological order, waves and teardown order (Qunar's dev/beta environment talk).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use plus_core::AppCode;

/// One application and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// The application.
    pub code: AppCode,
    /// Applications that must be healthy before this one starts; if one fails, this one is
    /// skipped.
    pub depends_on: Vec<AppCode>,
    /// Applications that, when present, deploy first; if one fails this one still starts, with a
    /// warning.
    pub optional_depends_on: Vec<AppCode>,
}

impl AppSpec {
    /// An application with no dependencies.
    #[must_use]
    pub fn new(code: AppCode) -> Self {
        Self { code, depends_on: Vec::new(), optional_depends_on: Vec::new() }
    }
}

/// Whether an edge must hold for the dependent to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DependencyKind {
    /// Required: failure skips the dependent.
    Required,
    /// Optional: failure is a warning.
    Optional,
}

/// Something wrong with a set of applications, found before anything starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphProblem {
    /// Two applications share a code.
    #[error("application `{0}` is declared twice")]
    Duplicate(AppCode),
    /// An application depends on itself.
    #[error("application `{0}` depends on itself")]
    SelfDependency(AppCode),
    /// A required dependency is not among the applications.
    #[error("application `{app}` depends on unknown application `{missing}`")]
    UnknownDependency {
        /// The application.
        app: AppCode,
        /// The missing code.
        missing: AppCode,
    },
    /// A dependency cycle, as the path that closes it (`api -> auth -> api`).
    #[error("dependency cycle: {}", .0.iter().map(AppCode::as_str).collect::<Vec<_>>().join(" -> "))]
    Cycle(Vec<AppCode>),
}

/// Every problem found in a set of applications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    /// The problems, duplicates and self-dependencies first, then unknown dependencies, then
    /// cycles.
    pub problems: Vec<GraphProblem>,
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for GraphError {}

/// A non-fatal finding.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GraphWarning {
    /// An optional dependency is not among the applications; it is ignored.
    UnknownOptionalDependency {
        /// The application.
        app: AppCode,
        /// The missing code.
        missing: AppCode,
    },
}

impl fmt::Display for GraphWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownOptionalDependency { app, missing } => {
                write!(
                    f,
                    "application `{app}` optionally depends on unknown application `{missing}`; ignored"
                )
            }
        }
    }
}

/// A validated, acyclic set of applications.
///
/// Node `i` is the `i`-th application in code order, so every "ties sorted by code" rule is a
/// comparison of indices. Edges run from a dependency to its dependent.
#[derive(Debug, Clone)]
pub struct AppGraph {
    apps: Vec<AppSpec>,
    graph: DiGraph<(), DependencyKind, u32>,
    index: HashMap<AppCode, u32>,
    warnings: Vec<GraphWarning>,
}

impl AppGraph {
    /// Validates `apps` and builds the graph.
    ///
    /// # Errors
    /// [`GraphError`] with every duplicate, self-dependency, unknown required dependency and
    /// cycle (one path per strongly connected group of applications).
    pub fn new(mut apps: Vec<AppSpec>) -> Result<Self, GraphError> {
        apps.sort_by(|a, b| a.code.cmp(&b.code));
        let mut problems = Vec::new();
        for pair in apps.windows(2) {
            if pair[0].code == pair[1].code
                && problems.last() != Some(&GraphProblem::Duplicate(pair[0].code.clone()))
            {
                problems.push(GraphProblem::Duplicate(pair[0].code.clone()));
            }
        }
        apps.dedup_by(|a, b| a.code == b.code);
        let index: HashMap<AppCode, u32> =
            apps.iter().enumerate().map(|(i, a)| (a.code.clone(), i as u32)).collect();
        let mut graph =
            DiGraph::<(), DependencyKind, u32>::with_capacity(apps.len(), apps.len() * 3);
        for _ in &apps {
            graph.add_node(());
        }
        let mut warnings = Vec::new();
        for (i, app) in apps.iter().enumerate() {
            let edges = app
                .depends_on
                .iter()
                .map(|d| (d, DependencyKind::Required))
                .chain(app.optional_depends_on.iter().map(|d| (d, DependencyKind::Optional)));
            for (dep, kind) in edges {
                if *dep == app.code {
                    problems.push(GraphProblem::SelfDependency(app.code.clone()));
                    continue;
                }
                match index.get(dep) {
                    Some(&d) => {
                        graph.add_edge(NodeIndex::new(d as usize), NodeIndex::new(i), kind);
                    }
                    None if kind == DependencyKind::Required => {
                        problems.push(GraphProblem::UnknownDependency {
                            app: app.code.clone(),
                            missing: dep.clone(),
                        });
                    }
                    None => warnings.push(GraphWarning::UnknownOptionalDependency {
                        app: app.code.clone(),
                        missing: dep.clone(),
                    }),
                }
            }
        }
        let graph_ok = Self { apps, graph, index, warnings };
        for cycle in graph_ok.cycles() {
            problems.push(GraphProblem::Cycle(cycle));
        }
        if problems.is_empty() { Ok(graph_ok) } else { Err(GraphError { problems }) }
    }

    /// One closing path per group of applications that depend on each other in a circle,
    /// starting from the group's smallest code and following "depends on".
    fn cycles(&self) -> Vec<Vec<AppCode>> {
        let mut out = Vec::new();
        // Kosaraju: petgraph runs it with explicit stacks, so a chain or cycle of any length is
        // fine (its recursive Tarjan overflowed the stack near 100,000 applications).
        let mut sccs = petgraph::algo::kosaraju_scc(&self.graph);
        for scc in &mut sccs {
            scc.sort_unstable();
        }
        sccs.sort_unstable_by_key(|scc| scc[0]);
        for scc in sccs.into_iter().filter(|scc| scc.len() > 1) {
            let start = scc[0];
            // Shortest path start -> ... -> start along "depends on" (edges reversed), inside
            // the group, smaller codes first.
            let mut previous: HashMap<NodeIndex<u32>, NodeIndex<u32>> = HashMap::new();
            let mut queue = VecDeque::from([start]);
            let mut closing = None;
            'search: while let Some(node) = queue.pop_front() {
                let mut deps: Vec<NodeIndex<u32>> = self
                    .graph
                    .neighbors_directed(node, Direction::Incoming)
                    .filter(|d| scc.binary_search(d).is_ok())
                    .collect();
                deps.sort_unstable();
                for dep in deps {
                    if dep == start {
                        closing = Some(node);
                        break 'search;
                    }
                    if let std::collections::hash_map::Entry::Vacant(e) = previous.entry(dep) {
                        e.insert(node);
                        queue.push_back(dep);
                    }
                }
            }
            let mut path = vec![start];
            let mut node =
                closing.expect("a strongly connected group has a cycle through every node");
            let mut back = vec![node];
            while node != start {
                node = previous[&node];
                back.push(node);
            }
            back.pop();
            back.reverse();
            path.extend(back);
            path.push(start);
            out.push(path.into_iter().map(|n| self.apps[n.index()].code.clone()).collect());
        }
        out
    }

    /// Warnings found while building (unknown optional dependencies).
    #[must_use]
    pub fn warnings(&self) -> &[GraphWarning] {
        &self.warnings
    }

    /// The applications, in code order.
    #[must_use]
    pub fn apps(&self) -> &[AppSpec] {
        &self.apps
    }

    /// How many applications.
    #[must_use]
    pub fn len(&self) -> usize {
        self.apps.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// The index of `code` (its position in code order).
    #[must_use]
    pub fn index_of(&self, code: &AppCode) -> Option<usize> {
        self.index.get(code).map(|&i| i as usize)
    }

    /// The code of application `index`.
    #[must_use]
    pub fn code(&self, index: usize) -> &AppCode {
        &self.apps[index].code
    }

    /// Dependencies of `index` with their kind.
    pub fn dependencies(&self, index: usize) -> impl Iterator<Item = (usize, DependencyKind)> + '_ {
        self.graph
            .edges_directed(NodeIndex::new(index), Direction::Incoming)
            .map(|e| (petgraph::visit::EdgeRef::source(&e).index(), *e.weight()))
    }

    /// Applications that depend on `index`, with the kind of dependency.
    pub fn dependents(&self, index: usize) -> impl Iterator<Item = (usize, DependencyKind)> + '_ {
        self.graph
            .edges_directed(NodeIndex::new(index), Direction::Outgoing)
            .map(|e| (petgraph::visit::EdgeRef::target(&e).index(), *e.weight()))
    }

    /// The underlying petgraph graph (edges from dependency to dependent), for hosts that want
    /// other algorithms.
    #[must_use]
    pub fn petgraph(&self) -> &DiGraph<(), DependencyKind, u32> {
        &self.graph
    }

    /// A topological order: every application after all its dependencies; among those ready at
    /// the same time, the smallest code first. Returned as indices.
    #[must_use]
    pub fn order_indices(&self) -> Vec<usize> {
        let n = self.apps.len();
        let mut indegree: Vec<u32> = (0..n)
            .map(|i| {
                self.graph.neighbors_directed(NodeIndex::new(i), Direction::Incoming).count() as u32
            })
            .collect();
        let mut ready: BinaryHeap<Reverse<u32>> =
            (0..n as u32).filter(|&i| indegree[i as usize] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i as usize);
            for next in
                self.graph.neighbors_directed(NodeIndex::new(i as usize), Direction::Outgoing)
            {
                let d = &mut indegree[next.index()];
                *d -= 1;
                if *d == 0 {
                    ready.push(Reverse(next.index() as u32));
                }
            }
        }
        // The graph was checked acyclic at construction.
        assert_eq!(order.len(), n, "a validated graph has no cycle");
        order
    }

    /// [`AppGraph::order_indices`] as codes.
    #[must_use]
    pub fn order(&self) -> Vec<&AppCode> {
        self.order_indices().into_iter().map(|i| &self.apps[i].code).collect()
    }

    /// The order to tear an environment down: dependents before what they depend on.
    #[must_use]
    pub fn teardown_order(&self) -> Vec<&AppCode> {
        let mut order = self.order();
        order.reverse();
        order
    }

    /// Waves for display: wave 1 holds applications with no dependencies, wave `n` those whose
    /// dependencies are all in earlier waves (and at least one in wave `n - 1`). Codes sorted.
    #[must_use]
    pub fn waves(&self) -> Vec<Vec<&AppCode>> {
        let mut wave = vec![0usize; self.apps.len()];
        for i in self.order_indices() {
            wave[i] = self.dependencies(i).map(|(d, _)| wave[d] + 1).max().unwrap_or(0);
        }
        let count = wave.iter().max().map_or(0, |w| w + 1);
        let mut waves = vec![Vec::new(); count];
        // Indices are in code order, so each wave comes out sorted.
        for (i, w) in wave.into_iter().enumerate() {
            waves[w].push(&self.apps[i].code);
        }
        waves
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(code: &str, deps: &[&str], optional: &[&str]) -> AppSpec {
        AppSpec {
            code: AppCode::new(code).unwrap(),
            depends_on: deps.iter().map(|d| AppCode::new(*d).unwrap()).collect(),
            optional_depends_on: optional.iter().map(|d| AppCode::new(*d).unwrap()).collect(),
        }
    }

    fn issue_example() -> Vec<AppSpec> {
        vec![
            app("web", &["api", "static"], &[]),
            app("api", &["db"], &["cache"]),
            app("db", &[], &[]),
            app("cache", &[], &[]),
            app("static", &[], &[]),
        ]
    }

    fn strs(codes: &[&AppCode]) -> Vec<String> {
        codes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn orders_and_waves_of_the_issue_example() {
        let g = AppGraph::new(issue_example()).unwrap();
        let waves: Vec<Vec<String>> = g.waves().iter().map(|w| strs(w)).collect();
        assert_eq!(waves, [vec!["cache", "db", "static"], vec!["api"], vec!["web"]]);
        assert_eq!(strs(&g.order()), ["cache", "db", "api", "static", "web"]);
        assert_eq!(strs(&g.teardown_order()), ["web", "static", "api", "db", "cache"]);
    }

    /// `check(apps, expected problems as text)`.
    fn check(apps: Vec<AppSpec>, expected: &[&str]) {
        let err = AppGraph::new(apps).unwrap_err();
        let got: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn problems_table() {
        check(
            vec![app("api", &["auth"], &[]), app("auth", &["api"], &[])],
            &["dependency cycle: api -> auth -> api"],
        );
        check(
            vec![
                app("a", &["b"], &[]),
                app("b", &["a"], &[]),
                app("x", &["y"], &[]),
                app("y", &["z"], &[]),
                app("z", &["x"], &[]),
            ],
            &["dependency cycle: a -> b -> a", "dependency cycle: x -> y -> z -> x"],
        );
        let long: Vec<AppSpec> = (0..50)
            .map(|i| app(&format!("m{i:02}"), &[&format!("m{:02}", (i + 1) % 50)], &[]))
            .collect();
        let err = AppGraph::new(long).unwrap_err();
        let GraphProblem::Cycle(path) = &err.problems[0] else { panic!() };
        assert_eq!(path.len(), 51);
        assert_eq!(path[0].as_str(), "m00");
        assert_eq!(path[1].as_str(), "m01");
        check(
            vec![app("web", &["nope"], &[])],
            &["application `web` depends on unknown application `nope`"],
        );
        check(vec![app("web", &["web"], &[])], &["application `web` depends on itself"]);
        check(
            vec![app("web", &[], &[]), app("web", &[], &[])],
            &["application `web` is declared twice"],
        );
        // A cycle through an optional edge still blocks ordering.
        check(
            vec![app("a", &["b"], &[]), app("b", &[], &["a"])],
            &["dependency cycle: a -> b -> a"],
        );
    }

    #[test]
    fn unknown_optional_dependency_warns() {
        let g = AppGraph::new(vec![app("api", &[], &["cache"])]).unwrap();
        assert_eq!(
            g.warnings()[0].to_string(),
            "application `api` optionally depends on unknown application `cache`; ignored"
        );
    }

    /// A chain and a cycle far past the ~85,000 applications where a recursive search overflowed
    /// a thread's stack (tests run on 2 MiB threads).
    #[test]
    fn a_long_chain_and_a_long_cycle_do_not_overflow_the_stack() {
        const N: usize = 250_000;
        let name = |i: usize| format!("app{i:06}");
        let chain: Vec<AppSpec> = (0..N)
            .map(|i| {
                let deps: Vec<String> = if i + 1 < N { vec![name(i + 1)] } else { Vec::new() };
                let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
                app(&name(i), &deps, &[])
            })
            .collect();
        let g = AppGraph::new(chain).unwrap();
        assert_eq!(g.order()[0].as_str(), name(N - 1));
        assert_eq!(g.waves().len(), N);
        let cycle: Vec<AppSpec> = (0..N)
            .map(|i| {
                let dep = name((i + 1) % N);
                app(&name(i), &[dep.as_str()], &[])
            })
            .collect();
        let err = AppGraph::new(cycle).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("dependency cycle: app000000 -> app000001 -> "), "{}", &msg[..200]);
        assert!(msg.ends_with("app249999 -> app000000"), "{}", &msg[msg.len() - 200..]);
    }
}
