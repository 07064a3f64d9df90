//! The JSON gateway's key-value, transaction and lease calls. Keys are strings; a value goes
//! as `value` (UTF-8 text) or `value_base64` (any bytes) and comes back as `value` when it is
//! UTF-8, `value_base64` otherwise. Errors are `{"error": ..., "code": ...}` with a status that
//! says what to do: 400 a bad request, 403 a role that may not, 404 no such lease, 410 a
//! compacted revision, 413 past a limit, 429 busy, 503 no leader (try again), 504 an outcome
//! that is unknown (a write may have applied), 507 the quota is reached.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Answer, Caller, Refused, Served, refusal};
use crate::client_error::ClientError;
use crate::driver::StoreError;
use crate::lease::LeaseId;
use crate::roles::Request;
use crate::txn::{Compare, KeyRange, Range, Txn, TxnOp, TxnOpResult};
use crate::types::{Expect, Versioned};

/// The answer to a store error.
pub(super) fn store_error(error: &StoreError) -> Response {
    let (status, code) = match error {
        StoreError::Client(client) => match client {
            ClientError::Invalid(_) | ClientError::Membership(_) => {
                (StatusCode::BAD_REQUEST, "invalid")
            }
            ClientError::Compacted { .. } => (StatusCode::GONE, "compacted"),
            ClientError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ClientError::NoSpace { .. } => (StatusCode::INSUFFICIENT_STORAGE, "no_space"),
            ClientError::Unknown => (StatusCode::GATEWAY_TIMEOUT, "outcome_unknown"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        },
        StoreError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
        StoreError::NoSuchLease(_) => (StatusCode::NOT_FOUND, "no_such_lease"),
        StoreError::Busy(_) => (StatusCode::TOO_MANY_REQUESTS, "busy"),
        StoreError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "outcome_unknown"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    refusal(status, code, error.to_string())
}

/// A call's JSON body, whatever the `Content-Type` says (`curl -d` says a form): what a
/// client sends is read as JSON or refused, with the decoder's line and column.
pub(super) struct JsonBody<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = Refused;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Refused> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| Refused::from(rejection.into_response()))?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| bad(format!("the body is not this call's JSON: {e}")))
    }
}

fn bad(message: String) -> Refused {
    refusal(StatusCode::BAD_REQUEST, "invalid", message).into()
}

/// A store error, refused.
#[allow(clippy::needless_pass_by_value)] // `map_err` hands the error over by value
fn failed(error: StoreError) -> Refused {
    store_error(&error).into()
}

/// A value as sent: text or base64.
#[derive(Debug, Deserialize)]
struct SentValue {
    value: Option<String>,
    value_base64: Option<String>,
}

impl SentValue {
    fn bytes(self) -> Result<Bytes, String> {
        match (self.value, self.value_base64) {
            (Some(text), None) => Ok(Bytes::from(text)),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded.as_bytes())
                .map(Bytes::from)
                .map_err(|e| format!("value_base64 is not base64: {e}")),
            (None, None) => Err("a value is needed: `value` or `value_base64`".to_owned()),
            (Some(_), Some(_)) => Err("`value` or `value_base64`, not both".to_owned()),
        }
    }
}

fn value_json(value: &Bytes) -> (&'static str, Value) {
    match std::str::from_utf8(value) {
        Ok(text) => ("value", Value::from(text)),
        Err(_) => {
            ("value_base64", Value::from(base64::engine::general_purpose::STANDARD.encode(value)))
        }
    }
}

fn kv_json(key: &str, versioned: &Versioned, keys_only: bool) -> Value {
    let mut kv = json!({
        "key": key,
        "version": versioned.version,
        "created": versioned.created,
        "lease": versioned.lease,
    });
    if !keys_only {
        let (field, value) = value_json(&versioned.value);
        kv[field] = value;
    }
    kv
}

/// `POST /v3/kv/range`.
#[derive(Debug, Deserialize)]
pub(super) struct RangeBody {
    key: String,
    #[serde(default)]
    prefix: bool,
    /// Keys from `key` up to this one, excluded.
    end: Option<String>,
    #[serde(default)]
    from_key: bool,
    limit: Option<usize>,
    revision: Option<u64>,
    #[serde(default)]
    count_only: bool,
    #[serde(default)]
    keys_only: bool,
}

impl RangeBody {
    fn range(&self) -> Result<Range, String> {
        let keys = match (self.prefix, &self.end, self.from_key) {
            (true, None, false) => KeyRange::Prefix(self.key.clone()),
            (false, Some(end), false) => {
                KeyRange::Between { start: self.key.clone(), end: end.clone() }
            }
            (false, None, true) => {
                KeyRange::Between { start: self.key.clone(), end: char::MAX.to_string() }
            }
            (false, None, false) => {
                KeyRange::Between { start: self.key.clone(), end: format!("{}\0", self.key) }
            }
            _ => return Err("one of `prefix`, `end` and `from_key` at most".to_owned()),
        };
        Ok(Range { keys, limit: self.limit, count_only: self.count_only, revision: self.revision })
    }
}

pub(super) async fn range(
    State(served): State<Served>,
    caller: Caller,
    JsonBody(body): JsonBody<RangeBody>,
) -> Answer {
    served.admit(&caller, Request::Read)?;
    let result = served.cluster.range(body.range().map_err(bad)?).await.map_err(failed)?;
    Ok(Json(json!({
        "kvs": result.kvs.iter().map(|(k, v)| kv_json(k, v, body.keys_only)).collect::<Vec<_>>(),
        "count": result.count,
        "more": result.more,
    }))
    .into_response())
}

/// `POST /v3/kv/put`.
#[derive(Debug, Deserialize)]
pub(super) struct PutBody {
    key: String,
    #[serde(flatten)]
    value: SentValue,
    lease: Option<LeaseId>,
}

pub(super) async fn put(
    State(served): State<Served>,
    caller: Caller,
    JsonBody(PutBody { key, value, lease }): JsonBody<PutBody>,
) -> Answer {
    served.admit(&caller, Request::Write)?;
    let value = value.bytes().map_err(bad)?;
    let version = match lease {
        Some(lease) => served.cluster.set_with_lease(&key, value, lease).await,
        None => served.cluster.set(&key, value).await,
    }
    .map_err(failed)?;
    Ok(Json(json!({ "version": version })).into_response())
}

/// `POST /v3/kv/delete`: one key (a range is deleted with a transaction, at once).
#[derive(Debug, Deserialize)]
pub(super) struct DeleteBody {
    key: String,
}

pub(super) async fn delete(
    State(served): State<Served>,
    caller: Caller,
    JsonBody(DeleteBody { key }): JsonBody<DeleteBody>,
) -> Answer {
    served.admit(&caller, Request::Write)?;
    let txn = Txn { when: Vec::new(), then: vec![TxnOp::Delete { key }], otherwise: Vec::new() };
    let outcome = served.cluster.txn(txn).await.map_err(failed)?;
    let existed = matches!(outcome.results.first(), Some(TxnOpResult::Delete { existed: true }));
    Ok(Json(json!({ "deleted": u8::from(existed), "version": outcome.version })).into_response())
}

/// `POST /v3/kv/txn`: `{"text": "..."}` in etcdctl's syntax (see `Txn`'s `FromStr`), or
/// `{"compare": [...], "success": [...], "failure": [...]}`.
#[derive(Debug, Deserialize)]
pub(super) struct TxnBody {
    text: Option<String>,
    #[serde(default)]
    compare: Vec<CompareBody>,
    #[serde(default)]
    success: Vec<OpBody>,
    #[serde(default)]
    failure: Vec<OpBody>,
}

/// One compare: the key and exactly one of what it must be.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompareBody {
    key: String,
    value: Option<String>,
    value_base64: Option<String>,
    version: Option<u64>,
    lease: Option<LeaseId>,
    #[serde(default)]
    absent: bool,
    #[serde(default)]
    exists: bool,
}

impl CompareBody {
    fn compare(self) -> Result<Compare, String> {
        let CompareBody { key, value, value_base64, version, lease, absent, exists } = self;
        let given = usize::from(value.is_some() || value_base64.is_some())
            + usize::from(version.is_some())
            + usize::from(lease.is_some())
            + usize::from(absent)
            + usize::from(exists);
        if given != 1 {
            return Err(format!(
                "compare of `{key}`: exactly one of value, value_base64, version, lease, absent, exists"
            ));
        }
        let expect = if let Some(version) = version {
            Expect::Version(version)
        } else if let Some(lease) = lease {
            Expect::Lease(Some(lease).filter(|&l| l != 0))
        } else if absent {
            Expect::Absent
        } else if exists {
            Expect::Exists
        } else {
            Expect::Value(SentValue { value, value_base64 }.bytes()?)
        };
        Ok(Compare { key, expect })
    }
}

/// One operation of a branch.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum OpBody {
    Put(PutBody),
    Delete(DeleteBody),
    Get { key: String },
    Range(RangeBody),
}

impl OpBody {
    fn op(self) -> Result<TxnOp, String> {
        Ok(match self {
            Self::Put(PutBody { key, value, lease }) => {
                TxnOp::Set { key, value: value.bytes()?, lease }
            }
            Self::Delete(DeleteBody { key }) => TxnOp::Delete { key },
            Self::Get { key } => TxnOp::Get(key),
            Self::Range(range) => TxnOp::Range(range.range()?),
        })
    }
}

fn ops(body: Vec<OpBody>) -> Result<Vec<TxnOp>, String> {
    body.into_iter().map(OpBody::op).collect()
}

fn txn_of(body: TxnBody) -> Result<Txn, String> {
    let TxnBody { text, compare, success, failure } = body;
    match text {
        Some(text) if compare.is_empty() && success.is_empty() && failure.is_empty() => {
            text.parse().map_err(|e: crate::TxnSyntaxError| e.to_string())
        }
        Some(_) => Err("`text`, or `compare`/`success`/`failure`, not both".to_owned()),
        None => Ok(Txn {
            when: compare.into_iter().map(CompareBody::compare).collect::<Result<_, _>>()?,
            then: ops(success)?,
            otherwise: ops(failure)?,
        }),
    }
}

fn op_result_json(result: &TxnOpResult) -> Value {
    match result {
        TxnOpResult::Set { version } => json!({ "put": { "version": version } }),
        TxnOpResult::Delete { existed } => json!({ "delete": { "deleted": u8::from(*existed) } }),
        TxnOpResult::Get(found) => json!({ "get": found.as_ref().map(|v| {
            let (field, value) = value_json(&v.value);
            let mut kv = json!({ "version": v.version, "created": v.created, "lease": v.lease });
            kv[field] = value;
            kv
        }) }),
        TxnOpResult::Range(range) => json!({ "range": {
            "kvs": range.kvs.iter().map(|(k, v)| kv_json(k, v, false)).collect::<Vec<_>>(),
            "count": range.count,
            "more": range.more,
        } }),
        TxnOpResult::Omitted { bytes } => json!({ "omitted": { "bytes": bytes } }),
    }
}

pub(super) async fn txn(
    State(served): State<Served>,
    caller: Caller,
    JsonBody(body): JsonBody<TxnBody>,
) -> Answer {
    served.admit(&caller, Request::Write)?;
    let outcome = served.cluster.txn(txn_of(body).map_err(bad)?).await.map_err(failed)?;
    Ok(Json(json!({
        "succeeded": outcome.succeeded,
        "version": outcome.version,
        "results": outcome.results.iter().map(op_result_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `POST /v3/lease/grant`.
#[derive(Debug, Deserialize)]
pub(super) struct GrantBody {
    ttl_ms: u64,
}

/// A lease by its id.
#[derive(Debug, Deserialize)]
pub(super) struct LeaseBody {
    id: LeaseId,
}

pub(super) async fn lease_grant(
    State(served): State<Served>,
    caller: Caller,
    JsonBody(GrantBody { ttl_ms }): JsonBody<GrantBody>,
) -> Answer {
    served.admit(&caller, Request::Write)?;
    let ttl = std::time::Duration::from_millis(ttl_ms);
    let info = served.cluster.grant_lease(ttl).await.map_err(failed)?;
    Ok(Json(json!({ "id": info.id, "ttl_ms": info.ttl_ms })).into_response())
}

pub(super) async fn lease_keep_alive(
    State(served): State<Served>,
    caller: Caller,
    body: JsonBody<LeaseBody>,
) -> Answer {
    lease_read(&served, &caller, body, true).await
}

pub(super) async fn lease_time_to_live(
    State(served): State<Served>,
    caller: Caller,
    body: JsonBody<LeaseBody>,
) -> Answer {
    lease_read(&served, &caller, body, false).await
}

async fn lease_read(
    served: &Served,
    caller: &Caller,
    JsonBody(LeaseBody { id }): JsonBody<LeaseBody>,
    renew: bool,
) -> Answer {
    // Keeping a lease alive changes what the store will do: a writer's call.
    served.admit(caller, if renew { Request::Write } else { Request::Read })?;
    let info = if renew {
        served.cluster.keep_alive(id).await
    } else {
        served.cluster.time_to_live(id).await
    }
    .map_err(failed)?;
    Ok(Json(json!({
        "id": info.id,
        "ttl_ms": info.ttl_ms,
        "remaining_ms": info.remaining_ms,
        "keys": info.keys,
    }))
    .into_response())
}

pub(super) async fn lease_revoke(
    State(served): State<Served>,
    caller: Caller,
    JsonBody(LeaseBody { id }): JsonBody<LeaseBody>,
) -> Answer {
    served.admit(&caller, Request::Write)?;
    served.cluster.revoke_lease(id).await.map_err(failed)?;
    Ok(Json(json!({ "revoked": id })).into_response())
}

pub(super) async fn lease_list(State(served): State<Served>, caller: Caller) -> Answer {
    served.admit(&caller, Request::Read)?;
    let leases = served.cluster.leases().await.map_err(failed)?;
    Ok(Json(json!({ "leases": leases })).into_response())
}
