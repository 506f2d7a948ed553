//! Calls again while the server sheds load (RESOURCE_EXHAUSTED, as its admission
//! control answers past its queue bound) or is restarting (UNAVAILABLE).
//!
//! A bulk client with many calls in flight keeps the server's queue near its bound, so
//! any one call may be refused several times in a row while its peers get in: the
//! budget is time, not a count of tries, and the pauses are jittered so refused calls
//! do not come back together.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tonic::Code;

/// How long one call keeps trying before its last refusal is the answer.
const RETRY_BUDGET: Duration = Duration::from_secs(120);

/// Codes worth another try after a pause: the server is busy or restarting.
pub fn shedding(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::ResourceExhausted)
}

fn policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .without_max_times()
        .with_total_delay(Some(RETRY_BUDGET))
}

/// Runs `call` until it succeeds, fails for good, or [`RETRY_BUDGET`] of pauses is spent.
pub async fn while_shedding<T, F, Fut>(call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    while_code(shedding, call).await
}

/// [`while_shedding`] for a caller that also tries again after other codes, such as
/// DEADLINE_EXCEEDED where a repeated call is safe.
pub async fn while_code<T, F, Fut>(again: fn(Code) -> bool, call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    call.retry(policy())
        .when(|s: &tonic::Status| again(s.code()))
        .await
}
