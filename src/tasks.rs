//! Work that runs beside the server for as long as it serves (the key-use
//! writer, the keyring watcher): started together before the first request,
//! told to stop together once the last one is answered, and waited for.

use std::{future::Future, pin::Pin};

use anyhow::Context;
use tokio::{sync::watch, task::JoinHandle};

type Start = Box<dyn FnOnce(Stopping) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// The tasks of one server, not yet started.
#[derive(Default)]
pub struct BackgroundTasks {
    tasks: Vec<(&'static str, Start)>,
}

/// Tells a task that the server is stopping; the task finishes its work (a
/// last flush) and returns.
#[derive(Clone)]
pub struct Stopping(watch::Receiver<bool>);

impl Stopping {
    /// Completes once the server is stopping.
    pub async fn wait(&mut self) {
        // An error means the sender is gone, which is a stop too.
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}

/// The started tasks.
pub struct Running {
    stop: watch::Sender<bool>,
    handles: Vec<(&'static str, JoinHandle<()>)>,
}

impl BackgroundTasks {
    /// A task that watches `Stopping` itself, to finish its work first.
    pub fn add<F, Fut>(&mut self, name: &'static str, task: F)
    where
        F: FnOnce(Stopping) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks
            .push((name, Box::new(move |stopping| Box::pin(task(stopping)))));
    }

    /// A task with nothing to finish: it is dropped where it stands.
    pub fn add_until_stopped<Fut>(&mut self, name: &'static str, task: Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.add(name, |mut stopping| async move {
            tokio::select! {
                () = task => {}
                () = stopping.wait() => {}
            }
        });
    }

    pub fn start(self) -> Running {
        let (stop, stopping) = watch::channel(false);
        let handles = self
            .tasks
            .into_iter()
            .map(|(name, start)| (name, tokio::spawn(start(Stopping(stopping.clone())))))
            .collect();
        Running { stop, handles }
    }
}

impl Running {
    /// Tells every task to stop and waits for all of them.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let mut first_failure = Ok(());
        for (name, handle) in self.handles {
            let outcome = handle.await.with_context(|| format!("the {name} failed"));
            first_failure = first_failure.and(outcome);
        }
        first_failure
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    use super::*;

    #[tokio::test]
    async fn every_task_is_told_to_stop_and_waited_for() {
        let finished = Arc::new(AtomicUsize::new(0));
        let mut tasks = BackgroundTasks::default();
        for name in ["first", "second"] {
            let finished = Arc::clone(&finished);
            tasks.add(name, move |mut stopping| async move {
                stopping.wait().await;
                finished.fetch_add(1, Ordering::SeqCst);
            });
        }
        tasks.add_until_stopped("endless", std::future::pending());
        tasks.start().stop().await.unwrap();
        assert_eq!(finished.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_panicking_task_is_reported() {
        let mut tasks = BackgroundTasks::default();
        tasks.add("faulty task", |_| async { panic!("boom") });
        let err = tasks.start().stop().await.unwrap_err();
        assert!(format!("{err:#}").contains("faulty task"), "{err:#}");
    }
}
