//! The password hashes and checks a server runs at once, and how many may
//! wait for a core: argon2 takes ~19 MiB and real CPU each, so a flood of
//! logins must neither spawn hundreds of blocking threads nor queue without
//! end, making every real login wait behind it.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use tokio::sync::Semaphore;

/// The queue is full: refused at once, to be retried later.
#[derive(Debug, thiserror::Error)]
pub enum Argon2Error {
    #[error("too many password checks are waiting")]
    Busy,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

pub struct Argon2Queue {
    running: Semaphore,
    cores: usize,
    waiting: AtomicUsize,
    queue: usize,
}

impl Argon2Queue {
    /// One run per core at a time, and at most `queue` more waiting.
    pub fn new(queue: u32) -> Argon2Queue {
        Argon2Queue::with_cores(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue,
        )
    }

    pub fn with_cores(cores: usize, queue: u32) -> Argon2Queue {
        Argon2Queue {
            running: Semaphore::new(cores),
            cores,
            waiting: AtomicUsize::new(0),
            queue: usize::try_from(queue).unwrap_or(usize::MAX),
        }
    }

    /// Runs `work` on the blocking pool once a core is free, or refuses at
    /// once if the queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Argon2Error> {
        let _permit = match self.running.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                let _waiting = Waiting::join(&self.waiting, self.queue).ok_or(Argon2Error::Busy)?;
                self.running
                    .acquire()
                    .await
                    .context("the argon2 queue is closed")?
            }
        };
        Ok(tokio::task::spawn_blocking(work)
            .await
            .context("argon2 panicked")?)
    }

    /// How many runs may go at once.
    pub fn cores(&self) -> usize {
        self.cores
    }

    /// How many runs wait for a core now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

/// A place in the queue, given back when dropped (a waiter whose request is
/// dropped leaves it too).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn join(waiting: &'a AtomicUsize, queue: usize) -> Option<Waiting<'a>> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < queue).then_some(n + 1)
            })
            .ok()
            .map(|_| Waiting(waiting))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{mpsc, Arc};

    use super::*;

    #[tokio::test]
    async fn past_the_queue_a_run_is_refused_at_once() {
        let queue = Arc::new(Argon2Queue::with_cores(1, 1));
        let (release, released) = mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel();
        let busy = {
            let queue = Arc::clone(&queue);
            tokio::spawn(async move {
                queue
                    .run(move || {
                        let _ = started.send(());
                        released.recv().unwrap();
                    })
                    .await
            })
        };
        running.await.unwrap();
        let waiter = {
            let queue = Arc::clone(&queue);
            tokio::spawn(async move { queue.run(|| 7).await })
        };
        while queue.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(queue.run(|| 8).await, Err(Argon2Error::Busy)));
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        assert_eq!(waiter.await.unwrap().unwrap(), 7);
        assert_eq!(queue.waiting(), 0);
        assert_eq!(queue.run(|| 9).await.unwrap(), 9);
    }
}
