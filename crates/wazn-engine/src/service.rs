//! The engine thread: one std thread owns the [`Engine`] and runs its loop, while any
//! number of callers (an HTTP front end, a load generator) hand it requests over a
//! channel and get each sequence's events back through an [`EventSink`].
//!
//! Callers never wait on the loop: submitting is a channel send, and events are pushed
//! to the sink as they happen. A sink that reports itself closed (its client went
//! away) has its sequence cancelled and its cache freed on the next step.
//!
//! Admission: at most `max_running` sequences are in the engine at once; up to
//! `max_queued` more wait their turn in arrival order; beyond that a submission is
//! refused at once with [`SubmitError::QueueFull`], so load sheds instead of piling up.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use wazn_models::SeqId;

use crate::engine::{Engine, Event};
use crate::error::EngineError;
use crate::sequence::{FinishReason, Request};

/// What the engine thread tells the owner of one submitted request.
#[derive(Debug)]
pub enum ServiceEvent {
    /// The request was admitted: its prompt is valid and is being computed. It comes before
    /// any token, so a server can send a stream's headers at once, not after a long prompt
    /// has been read (clients time out a response that does not begin).
    Started,
    /// A token, some text, or the end of the sequence.
    Event(Event),
    /// The request could not start (a prompt too long, a bad sampler setting); nothing
    /// more follows.
    Rejected(EngineError),
}

/// Where the events of one request go.
pub trait EventSink: Send {
    /// Delivers an event; false when nobody listens any more.
    fn send(&mut self, event: ServiceEvent) -> bool;
    /// Whether the listener is gone (the request can be cancelled).
    fn is_closed(&self) -> bool;
}

/// One request and where its events go.
pub struct Submission {
    pub request: Request,
    pub sink: Box<dyn EventSink>,
}

/// Why a submission was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the server is busy: {waiting} requests are already waiting; retry later")]
    QueueFull { waiting: usize },
    #[error("the engine is shutting down")]
    ShuttingDown,
}

/// Limits of the engine thread.
#[derive(Clone, Copy, Debug)]
pub struct ServiceOptions {
    /// Sequences computed together at most.
    pub max_running: usize,
    /// Sequences that may wait for a place; more are refused.
    pub max_queued: usize,
}

/// Counters the engine thread keeps up to date, read by anyone (e.g. /metrics).
#[derive(Debug, Default)]
pub struct ServiceCounters {
    pub queued: AtomicUsize,
    pub running: AtomicUsize,
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub kv_blocks_used: AtomicUsize,
    pub kv_blocks_total: AtomicUsize,
    /// Prompt positions looked up in the prefix cache, and those found there.
    pub prefix_lookup_tokens: AtomicU64,
    pub prefix_hit_tokens: AtomicU64,
    pub steps: AtomicU64,
}

enum Command {
    Submit(Vec<Submission>),
    Shutdown,
}

/// The caller's side of the engine thread.
pub struct EngineHandle {
    commands: mpsc::Sender<Command>,
    counters: Arc<ServiceCounters>,
    /// Sequences submitted and not yet ended (waiting or running).
    in_flight: Arc<AtomicUsize>,
    stopping: Arc<AtomicBool>,
    options: ServiceOptions,
    thread: Option<JoinHandle<()>>,
}

impl EngineHandle {
    /// Starts the engine thread, which owns `engine` from now on.
    pub fn spawn(engine: Engine, options: ServiceOptions) -> std::io::Result<EngineHandle> {
        let options = ServiceOptions {
            max_running: options.max_running.max(1),
            max_queued: options.max_queued,
        };
        let (commands, receiver) = mpsc::channel();
        let counters = Arc::new(ServiceCounters::default());
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut worker = Worker {
            engine,
            commands: receiver,
            counters: Arc::clone(&counters),
            in_flight: Arc::clone(&in_flight),
            max_running: options.max_running,
            waiting: VecDeque::new(),
            running: HashMap::new(),
            stopping: false,
        };
        worker.publish();
        let thread = std::thread::Builder::new()
            .name("wazn-engine".into())
            .spawn(move || worker.run())?;
        Ok(EngineHandle {
            commands,
            counters,
            in_flight,
            stopping: Arc::new(AtomicBool::new(false)),
            options,
            thread: Some(thread),
        })
    }

    /// Hands requests to the engine thread, all or none (the `n` choices of one call).
    pub fn submit(&self, submissions: Vec<Submission>) -> Result<(), SubmitError> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        let n = submissions.len();
        let capacity = self.options.max_running + self.options.max_queued;
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (cur + n <= capacity).then_some(cur + n)
            });
        if admitted.is_err() {
            return Err(SubmitError::QueueFull {
                waiting: self.counters.queued.load(Ordering::Relaxed),
            });
        }
        if self.commands.send(Command::Submit(submissions)).is_err() {
            self.in_flight.fetch_sub(n, Ordering::AcqRel);
            return Err(SubmitError::ShuttingDown);
        }
        Ok(())
    }

    pub fn counters(&self) -> &ServiceCounters {
        &self.counters
    }

    pub fn options(&self) -> ServiceOptions {
        self.options
    }

    /// Refuses new requests and cancels those in flight (their sinks get a final
    /// `Cancelled` event). Returns at once; [`EngineHandle::join`] waits for the thread.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        let _ = self.commands.send(Command::Shutdown);
    }

    /// Waits for the engine thread to end (after [`EngineHandle::shutdown`]).
    pub fn join(mut self) {
        self.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The engine thread's state.
struct Worker {
    engine: Engine,
    commands: mpsc::Receiver<Command>,
    counters: Arc<ServiceCounters>,
    in_flight: Arc<AtomicUsize>,
    max_running: usize,
    waiting: VecDeque<Submission>,
    running: HashMap<SeqId, Box<dyn EventSink>>,
    stopping: bool,
}

impl Worker {
    fn run(&mut self) {
        loop {
            // Block only when there is nothing to compute.
            if self.running.is_empty() && self.waiting.is_empty() {
                if self.stopping {
                    return;
                }
                match self.commands.recv() {
                    Ok(command) => self.handle(command),
                    Err(_) => return,
                }
            }
            while let Ok(command) = self.commands.try_recv() {
                self.handle(command);
            }
            if self.stopping {
                self.cancel_everything();
                self.publish();
                continue;
            }
            self.drop_abandoned();
            self.admit();
            self.publish();
            if self.engine.has_work() {
                self.step();
                self.publish();
            }
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Submit(submissions) => self.waiting.extend(submissions),
            Command::Shutdown => self.stopping = true,
        }
    }

    /// Moves waiting requests into the engine while there is room.
    fn admit(&mut self) {
        while self.running.len() < self.max_running {
            let Some(mut submission) = self.waiting.pop_front() else {
                break;
            };
            match self.engine.add_request(submission.request) {
                Ok(seq_id) => {
                    // A listener already gone is found by `drop_abandoned` like any other.
                    submission.sink.send(ServiceEvent::Started);
                    self.running.insert(seq_id, submission.sink);
                }
                Err(err) => {
                    submission.sink.send(ServiceEvent::Rejected(err));
                    self.in_flight.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }

    /// Forgets waiting requests and cancels running sequences whose client went away.
    fn drop_abandoned(&mut self) {
        let before = self.waiting.len();
        self.waiting.retain(|s| !s.sink.is_closed());
        let dropped = before - self.waiting.len();
        // Checked every step: allocate only when a client has gone.
        if dropped == 0 && !self.running.values().any(|sink| sink.is_closed()) {
            return;
        }
        let gone: Vec<SeqId> = self
            .running
            .iter()
            .filter(|(_, sink)| sink.is_closed())
            .map(|(&id, _)| id)
            .collect();
        for seq_id in &gone {
            self.engine.cancel(*seq_id);
            self.running.remove(seq_id);
        }
        self.in_flight
            .fetch_sub(dropped + gone.len(), Ordering::AcqRel);
    }

    fn cancel_everything(&mut self) {
        let n = self.waiting.len() + self.running.len();
        for mut submission in self.waiting.drain(..) {
            submission
                .sink
                .send(ServiceEvent::Event(cancelled_event(SeqId::MAX)));
        }
        for (seq_id, mut sink) in self.running.drain() {
            self.engine.cancel(seq_id);
            sink.send(ServiceEvent::Event(cancelled_event(seq_id)));
        }
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
    }

    fn step(&mut self) {
        let before = self.engine.stats();
        let events = match self.engine.step() {
            Ok(events) => events,
            Err(err) => {
                // A failed step leaves the cache as it was; end every running sequence
                // with the error rather than retry forever.
                let message = err.to_string();
                for (seq_id, mut sink) in self.running.drain() {
                    self.engine.cancel(seq_id);
                    sink.send(ServiceEvent::Rejected(EngineError::StepFailed(
                        message.clone(),
                    )));
                    self.in_flight.fetch_sub(1, Ordering::AcqRel);
                }
                return;
            }
        };
        let after = self.engine.stats();
        self.counters.steps.fetch_add(1, Ordering::Relaxed);
        self.counters.prompt_tokens.fetch_add(
            after.n_prompt_tokens.saturating_sub(before.n_prompt_tokens) as u64,
            Ordering::Relaxed,
        );
        for event in events {
            let seq_id = event.seq_id;
            if event.token.is_some() {
                self.counters
                    .generated_tokens
                    .fetch_add(1, Ordering::Relaxed);
            }
            let finished = event.finished.is_some();
            let Some(sink) = self.running.get_mut(&seq_id) else {
                continue;
            };
            let delivered = sink.send(ServiceEvent::Event(event));
            if finished || !delivered {
                if !finished {
                    self.engine.cancel(seq_id);
                }
                self.running.remove(&seq_id);
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Copies the engine's state into the shared counters.
    fn publish(&self) {
        let c = &self.counters;
        c.queued.store(self.waiting.len(), Ordering::Relaxed);
        c.running.store(self.running.len(), Ordering::Relaxed);
        let kv = self.engine.kv_usage();
        c.kv_blocks_used.store(kv.blocks_used, Ordering::Relaxed);
        c.kv_blocks_total.store(kv.blocks_total, Ordering::Relaxed);
        c.prefix_lookup_tokens
            .store(kv.prefix_lookup_tokens, Ordering::Relaxed);
        c.prefix_hit_tokens
            .store(kv.prefix_hit_tokens, Ordering::Relaxed);
    }
}

fn cancelled_event(seq_id: SeqId) -> Event {
    Event {
        seq_id,
        token: None,
        text: String::new(),
        top_logprobs: Vec::new(),
        logprob: None,
        finished: Some(FinishReason::Cancelled),
        stop_string: None,
        prompt_scores: Vec::new(),
        embedding: None,
    }
}
