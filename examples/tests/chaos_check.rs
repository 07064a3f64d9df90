//! `quorum_chaos --check`, the linearizability check of a recorded history, on small
//! histories whose verdict is known: it must accept what is linearizable and refuse what is
//! not, or its `linearizable=true` after a run would mean nothing.
#![cfg(unix)]

mod common;

use std::process::Command;

use common::example;

fn invoke(thread: u64, op: &str) -> String {
    format!(r#"{{"t_ms":0,"client":0,"thread":{thread},"event":"invoke","op":{op}}}"#)
}

fn done(thread: u64, event: &str, result: &str) -> String {
    format!(r#"{{"t_ms":0,"client":0,"thread":{thread},"event":"{event}","result":{result}}}"#)
}

const PUT_A: &str = r#"{"Set":{"key":"reg/0","value":[97]}}"#;
const PUT_B: &str = r#"{"Set":{"key":"reg/0","value":[98]}}"#;
const GET: &str = r#"{"Get":"reg/0"}"#;
const APPLIED: &str = r#"{"Applied":{"version":1}}"#;

/// One client writes, then swaps by transaction; another reads afterwards and sees `seen`.
fn write_swap_read(write: &str, txn: &str, swapped: &str, read: &str, seen: &str) -> [String; 6] {
    [
        invoke(1, write),
        done(1, "ok", APPLIED),
        invoke(1, txn),
        done(1, "ok", swapped),
        invoke(2, read),
        done(2, "ok", seen),
    ]
}

fn got(value: u8) -> String {
    format!(r#"{{"Value":{{"value":[{value}],"version":1,"created":1,"lease":null}}}}"#)
}

/// Runs `quorum_chaos --check` on `lines`; its verdict.
fn check(name: &str, lines: &[String]) -> bool {
    let path = std::env::temp_dir().join(format!("plus-chaos-{name}-{}.jsonl", std::process::id()));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let output = Command::new(example("quorum_chaos")).arg("--check").arg(&path).output().unwrap();
    std::fs::remove_file(&path).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let verdict = stdout.contains("linearizable=true");
    assert_eq!(output.status.success(), verdict, "{stdout}");
    verdict
}

#[test]
fn a_read_overlapping_a_write_may_see_it() {
    let lines =
        [invoke(1, PUT_A), invoke(2, GET), done(2, "ok", &got(b'a')), done(1, "ok", APPLIED)];
    assert!(check("overlap", &lines));
}

#[test]
fn a_stale_read_after_a_newer_write_returned_is_refused() {
    let lines = [
        invoke(1, PUT_A),
        done(1, "ok", APPLIED),
        invoke(1, PUT_B),
        done(1, "ok", APPLIED),
        invoke(2, GET),
        done(2, "ok", &got(b'a')),
    ];
    assert!(!check("stale", &lines));
}

#[test]
fn a_write_of_unknown_outcome_may_have_applied_but_nothing_invents_values() {
    let unknown = r#""no answer within 5s""#;
    let applied_later =
        [invoke(1, PUT_A), done(1, "unknown", unknown), invoke(2, GET), done(2, "ok", &got(b'a'))];
    assert!(check("unknown", &applied_later));
    let invented = [invoke(2, GET), done(2, "ok", &got(b'z'))];
    assert!(!check("invented", &invented));
}

#[test]
fn transactions_and_range_reads_are_checked_too() {
    let txn = r#"{"Txn":{"when":[{"key":"reg/0","expect":{"Value":[97]}}],"then":[{"Set":{"key":"reg/0","value":[98],"lease":null}}],"otherwise":[{"Get":"reg/0"}]}}"#;
    let swapped = r#"{"Txn":{"succeeded":true,"version":2,"results":[{"Set":{"version":2}}]}}"#;
    let range =
        r#"{"Range":{"keys":{"Prefix":"reg/0"},"limit":null,"count_only":false,"revision":null}}"#;
    let found_b = r#"{"Range":{"kvs":[["reg/0",{"value":[98],"version":2,"created":1,"lease":null}]],"count":1,"more":false}}"#;
    let found_a = r#"{"Range":{"kvs":[["reg/0",{"value":[97],"version":1,"created":1,"lease":null}]],"count":1,"more":false}}"#;
    let history = |seen| write_swap_read(PUT_A, txn, swapped, range, seen);
    assert!(check("txn-range", &history(found_b)));
    // The transaction swapped `a` for `b` before the read began: reading `a` is stale.
    assert!(!check("txn-range-stale", &history(found_a)));
}

#[test]
fn the_pair_is_written_together_and_a_torn_read_is_refused() {
    let both_a = r#"{"MultiSet":[["pair/a",[97]],["pair/b",[97]]]}"#;
    let txn_to_b = r#"{"Txn":{"when":[{"key":"pair/a","expect":{"Value":[97]}},{"key":"pair/b","expect":{"Value":[97]}}],"then":[{"Set":{"key":"pair/a","value":[98],"lease":null}},{"Set":{"key":"pair/b","value":[98],"lease":null}}],"otherwise":[{"Get":"pair/a"},{"Get":"pair/b"}]}}"#;
    let swapped = r#"{"Txn":{"succeeded":true,"version":2,"results":[{"Set":{"version":2}},{"Set":{"version":2}}]}}"#;
    let get_both = r#"{"MultiGet":["pair/a","pair/b"]}"#;
    let found = |a: u8, b: u8| {
        format!(
            r#"{{"Values":[{{"value":[{a}],"version":2,"created":1,"lease":null}},{{"value":[{b}],"version":2,"created":1,"lease":null}}]}}"#
        )
    };
    let history = |seen: &str| write_swap_read(both_a, txn_to_b, swapped, get_both, seen);
    assert!(check("pair", &history(&found(b'b', b'b'))));
    // Half of the transaction: no write ever left the pair so.
    assert!(!check("pair-torn", &history(&found(b'a', b'b'))));
    assert!(!check("pair-stale", &history(&found(b'a', b'a'))));
}

/// What the register model alone would let through: a right value at a version its write
/// never had, a failed compare reporting a value nobody wrote, and a range with a key it does
/// not cover or a count that disagrees with its keys.
#[test]
fn versions_a_failed_compares_value_and_a_ranges_keys_are_checked_too() {
    let put_then_get = |seen: &str| {
        [invoke(1, PUT_A), done(1, "ok", APPLIED), invoke(2, GET), done(2, "ok", seen)]
    };
    assert!(check("version-right", &put_then_get(&got(b'a'))));
    let wrong_version = r#"{"Value":{"value":[97],"version":7,"created":1,"lease":null}}"#;
    assert!(!check("version-wrong", &put_then_get(wrong_version)));

    let cas = r#"{"CompareAndSet":{"key":"reg/0","expect":{"Value":[98]},"value":[99]}}"#;
    let failed_with = |current: u8| {
        format!(
            r#"{{"CompareFailed":{{"key":"reg/0","current":{{"value":[{current}],"version":1,"created":1,"lease":null}}}}}}"#
        )
    };
    let history = |current: u8| {
        [
            invoke(1, PUT_A),
            done(1, "ok", APPLIED),
            invoke(2, cas),
            done(2, "fail", &failed_with(current)),
        ]
    };
    assert!(check("failed-compare", &history(b'a')));
    assert!(!check("failed-compare-invented", &history(b'z')));

    let range =
        r#"{"Range":{"keys":{"Prefix":"reg/0"},"limit":null,"count_only":false,"revision":null}}"#;
    let stray = r#"{"Range":{"kvs":[["reg/0",{"value":[97],"version":1,"created":1,"lease":null}],["reg/00",{"value":[97],"version":1,"created":1,"lease":null}]],"count":2,"more":false}}"#;
    let miscounted = r#"{"Range":{"kvs":[["reg/0",{"value":[97],"version":1,"created":1,"lease":null}]],"count":2,"more":false}}"#;
    let ranged = |seen: &str| {
        [invoke(1, PUT_A), done(1, "ok", APPLIED), invoke(2, range), done(2, "ok", seen)]
    };
    assert!(!check("range-stray-key", &ranged(stray)));
    assert!(!check("range-miscounted", &ranged(miscounted)));
}

#[test]
fn a_writers_key_read_back_without_its_acknowledged_put_is_refused() {
    // The writers' keys are in the history as registers: one put each, then the final
    // read-back's get. A put acknowledged and then read back absent is a lost write.
    let put = r#"{"Set":{"key":"chaos/1/7","value":[119,49,45,55]}}"#;
    let get = r#"{"Get":"chaos/1/7"}"#;
    let kept = r#"{"Value":{"value":[119,49,45,55],"version":1,"created":1,"lease":null}}"#;
    let read_back =
        |seen: &str| [invoke(1, put), done(1, "ok", APPLIED), invoke(2, get), done(2, "ok", seen)];
    assert!(check("writer-kept", &read_back(kept)));
    assert!(!check("writer-lost", &read_back(r#"{"Value":null}"#)));
}
