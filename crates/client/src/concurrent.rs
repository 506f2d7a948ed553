//! Many calls, at most `concurrency` in flight, their results in the order given: what
//! `enroll` (an identity a call) and `evaluate` (a photo or a search a call) both do.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::ClientError;

/// Runs `call(item)` for every item, at most `concurrency` at once, and returns the
/// outputs in the items' order. The first call that fails stops the rest (they are
/// aborted) and its error is returned. `done(n)` hears each time the n-th call
/// finishes, also while later calls are still being started, so progress shows from the
/// first answer.
pub async fn in_order<I, T, F, Fut>(
    items: impl IntoIterator<Item = I>,
    concurrency: usize,
    call: F,
    mut done: impl FnMut(usize),
) -> Result<Vec<T>, ClientError>
where
    F: Fn(I) -> Fut,
    Fut: Future<Output = Result<T, ClientError>> + Send + 'static,
    T: Send + 'static,
{
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut out: Vec<Option<T>> = Vec::new();
    let mut finished = 0;
    let mut collect = |joined: Result<(usize, Result<T, ClientError>), tokio::task::JoinError>,
                       out: &mut Vec<Option<T>>| {
        let (index, value) =
            joined.map_err(|e| ClientError::Failed(format!("a call task: {e}")))?;
        out[index] = Some(value?);
        finished += 1;
        done(finished);
        Ok::<(), ClientError>(())
    };
    for (index, item) in items.into_iter().enumerate() {
        out.push(None);
        while let Some(joined) = tasks.try_join_next() {
            collect(joined, &mut out)?;
        }
        let permit = limit
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Failed("stopped".into()))?;
        let future = call(item);
        tasks.spawn(async move {
            let value = future.await;
            drop(permit);
            (index, value)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        collect(joined, &mut out)?;
    }
    // Every task answered exactly once above (dropping `tasks` on an error aborts the rest).
    Ok(out.into_iter().flatten().collect())
}
