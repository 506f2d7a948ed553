//! Scheduling priority of the service's threads: the ones that serve gRPC, decode
//! images and detect faces may run at a lower priority (a higher nice value) than the
//! model's, so that under overload the cores go to inference first and answering
//! refusals takes only what is left (docs/benchmarks.md, "Overload").
//!
//! Five lines of `libc` rather than a crate: the `thread-priority` crate maps its
//! portable levels onto real-time policies, which need privileges; a nice value
//! above the process's own needs none.

/// Adds `by` to the calling thread's nice value (at most 19). On Linux the nice value
/// is a per-thread attribute: `setpriority(PRIO_PROCESS, 0, ..)` changes the calling
/// thread only, and threads it starts afterwards inherit it. Raising it needs no
/// privilege; lowering it again does.
pub fn lower_current_thread_priority(by: i32) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let now = current_thread_nice()
            .ok_or_else(|| std::io::Error::other("this thread's nice value is unreadable"))?;
        // SAFETY: a plain system call on the calling thread; no memory is passed.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, (now + by).min(19)) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = by;
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "per-thread nice values are Linux-only",
        ))
    }
}

/// The calling thread's nice value (Linux), `None` where unknown.
pub fn current_thread_nice() -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        // getpriority returns the value itself, so -1 is ambiguous: clear errno first.
        // SAFETY: errno is thread-local; a plain system call follows.
        unsafe { *libc::__errno_location() = 0 };
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let failed = std::io::Error::last_os_error().raw_os_error().unwrap_or(0) != 0;
        (!failed).then_some(nice)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Runs `work` on a new OS thread and awaits its result. Called from the task that
/// `main` blocks on (the process's main thread), the new thread, and every thread it
/// starts, keep the process's priority even when the runtime's threads run niced:
/// the model is loaded this way so that the threads its runtime starts (OpenVINO's
/// TBB workers) are not niced with the blocking pool.
pub async fn run_on_new_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _ = tx.send(work());
        })?;
    rx.await
        .map_err(|_| std::io::Error::other(format!("thread {name} ended without a result")))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_lowers_its_own_priority_only() {
        let before = current_thread_nice().expect("nice of this thread");
        let target = (before + 3).min(19);
        let (inside, inherited) = std::thread::spawn(move || {
            lower_current_thread_priority(3).expect("raising nice needs no privilege");
            let child = std::thread::spawn(current_thread_nice).join().unwrap();
            (current_thread_nice(), child)
        })
        .join()
        .unwrap();
        assert_eq!(inside, Some(target));
        assert_eq!(
            inherited,
            Some(target),
            "a thread inherits its creator's nice"
        );
        assert_eq!(
            current_thread_nice(),
            Some(before),
            "other threads keep theirs"
        );
    }
}
