//! Errors. Each submission error hands the task back (`into_inner`), like
//! crossbeam-channel's `TrySendError`; each join error that is not final
//! hands the [`JoinHandle`] back.

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};

use stead_core::{CancelReason, Cancelled};

use crate::handle::JoinHandle;
use crate::stats::describe;
use crate::task::Panic;

/// Why a task produced no value.
pub struct JoinError {
    repr: Repr,
    task: Option<Arc<str>>,
}

enum Repr {
    Panicked {
        message: String,
        payload: Mutex<Option<Box<dyn Any + Send>>>,
    },
    Cancelled(CancelReason),
}

impl JoinError {
    pub(crate) fn panicked(p: Panic, task: Option<Arc<str>>) -> JoinError {
        JoinError {
            repr: Repr::Panicked {
                message: p.message,
                payload: Mutex::new(Some(p.payload)),
            },
            task,
        }
    }

    pub(crate) fn panicked_message(message: String, task: Option<Arc<str>>) -> JoinError {
        JoinError {
            repr: Repr::Panicked {
                message,
                payload: Mutex::new(None),
            },
            task,
        }
    }

    pub(crate) fn cancelled(reason: CancelReason, task: Option<Arc<str>>) -> JoinError {
        JoinError {
            repr: Repr::Cancelled(reason),
            task,
        }
    }

    /// A copy without the panic payload (for errors shared by a batch).
    pub(crate) fn replicate(&self) -> JoinError {
        JoinError {
            repr: match &self.repr {
                Repr::Panicked { message, .. } => Repr::Panicked {
                    message: message.clone(),
                    payload: Mutex::new(None),
                },
                Repr::Cancelled(r) => Repr::Cancelled(*r),
            },
            task: self.task.clone(),
        }
    }

    /// The task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panicked { .. })
    }

    /// The task was cancelled before it ran: through its handle, by its
    /// deadline, or by shutdown.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, Repr::Cancelled(_))
    }

    /// The panic message (`panic!`'s formatted text), if the task panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match &self.repr {
            Repr::Panicked { message, .. } => Some(message),
            Repr::Cancelled(_) => None,
        }
    }

    /// Why the task was cancelled, if it was.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        match self.repr {
            Repr::Cancelled(r) => Some(r),
            Repr::Panicked { .. } => None,
        }
    }

    /// The task's name, if it was given one.
    pub fn task_name(&self) -> Option<&str> {
        self.task.as_deref()
    }

    /// The panic payload, to re-raise it with [`std::panic::resume_unwind`].
    /// `None` if the task did not panic (or the payload was already taken).
    pub fn into_panic(self) -> Option<Box<dyn Any + Send + 'static>> {
        match self.repr {
            Repr::Panicked { payload, .. } => {
                payload.into_inner().unwrap_or_else(|e| e.into_inner())
            }
            Repr::Cancelled(_) => None,
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("JoinError");
        match &self.repr {
            Repr::Panicked { message, .. } => d.field("panicked", message),
            Repr::Cancelled(r) => d.field("cancelled", r),
        };
        d.field("task", &self.task).finish()
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = describe(self.task.as_deref());
        match &self.repr {
            Repr::Panicked { message, .. } => write!(f, "{who} panicked: {message}"),
            Repr::Cancelled(r) => write!(f, "{who} was cancelled before it ran: {r}"),
        }
    }
}

impl Error for JoinError {}

impl From<JoinError> for io::Error {
    /// A cancelled task becomes a [`Cancelled`] error (kind `TimedOut` for a
    /// deadline), a panic an `Other` error carrying the message.
    fn from(e: JoinError) -> io::Error {
        match e.repr {
            Repr::Cancelled(r) => Cancelled::new(r).into(),
            Repr::Panicked { .. } => io::Error::other(e.to_string()),
        }
    }
}

/// The error of [`try_submit`](crate::Pool::try_submit): the task comes back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySubmitError<F> {
    /// The queue is full.
    Full(F),
    /// The pool is shutting down (only through a [`PoolHandle`](crate::PoolHandle)).
    Shutdown(F),
}

impl<F> TrySubmitError<F> {
    /// The task that was not queued.
    pub fn into_inner(self) -> F {
        match self {
            TrySubmitError::Full(f) | TrySubmitError::Shutdown(f) => f,
        }
    }

    /// Whether the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, TrySubmitError::Full(_))
    }

    /// Whether the pool was shutting down.
    pub fn is_shutdown(&self) -> bool {
        matches!(self, TrySubmitError::Shutdown(_))
    }
}

impl<F> fmt::Debug for TrySubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySubmitError::Full(_) => f.write_str("Full(..)"),
            TrySubmitError::Shutdown(_) => f.write_str("Shutdown(..)"),
        }
    }
}

impl<F> fmt::Display for TrySubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySubmitError::Full(_) => f.write_str("submitting to a full pool queue"),
            TrySubmitError::Shutdown(_) => {
                f.write_str("submitting to a pool that is shutting down")
            }
        }
    }
}

impl<F: Send> Error for TrySubmitError<F> {}

impl<F> From<TrySubmitError<F>> for io::Error {
    /// `WouldBlock` for a full queue, `BrokenPipe` for a pool shutting down.
    fn from(e: TrySubmitError<F>) -> io::Error {
        let kind = if e.is_full() {
            io::ErrorKind::WouldBlock
        } else {
            io::ErrorKind::BrokenPipe
        };
        io::Error::new(kind, e.to_string())
    }
}

/// The error of [`submit_timeout`](crate::Pool::submit_timeout) and
/// [`submit_deadline`](crate::Pool::submit_deadline): the task comes back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum SubmitTimeoutError<F> {
    /// The queue stayed full until the deadline.
    Timeout(F),
    /// The pool is shutting down (only through a [`PoolHandle`](crate::PoolHandle)).
    Shutdown(F),
}

impl<F> SubmitTimeoutError<F> {
    /// The task that was not queued.
    pub fn into_inner(self) -> F {
        match self {
            SubmitTimeoutError::Timeout(f) | SubmitTimeoutError::Shutdown(f) => f,
        }
    }

    /// Whether the deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SubmitTimeoutError::Timeout(_))
    }

    /// Whether the pool was shutting down.
    pub fn is_shutdown(&self) -> bool {
        matches!(self, SubmitTimeoutError::Shutdown(_))
    }
}

impl<F> fmt::Debug for SubmitTimeoutError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            SubmitTimeoutError::Shutdown(_) => f.write_str("Shutdown(..)"),
        }
    }
}

impl<F> fmt::Display for SubmitTimeoutError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitTimeoutError::Timeout(_) => {
                f.write_str("timed out waiting for room in the pool queue")
            }
            SubmitTimeoutError::Shutdown(_) => {
                f.write_str("submitting to a pool that is shutting down")
            }
        }
    }
}

impl<F: Send> Error for SubmitTimeoutError<F> {}

impl<F> From<SubmitTimeoutError<F>> for io::Error {
    /// `TimedOut` for a deadline, `BrokenPipe` for a pool shutting down.
    fn from(e: SubmitTimeoutError<F>) -> io::Error {
        let kind = if e.is_timeout() {
            io::ErrorKind::TimedOut
        } else {
            io::ErrorKind::BrokenPipe
        };
        io::Error::new(kind, e.to_string())
    }
}

/// The error of [`JoinHandle::join_timeout`]: the handle comes back on timeout.
pub enum JoinTimeoutError<T> {
    /// The task had not finished by the deadline; join again or cancel it.
    Timeout(JoinHandle<T>),
    /// The task finished without a value.
    Failed(JoinError),
}

/// The error of [`JoinHandle::try_join`]: the handle comes back if unfinished.
pub enum TryJoinError<T> {
    /// The task has not finished yet.
    NotFinished(JoinHandle<T>),
    /// The task finished without a value.
    Failed(JoinError),
}

macro_rules! join_wait_error {
    ($ty:ident, $pending:ident, $msg:literal) => {
        impl<T> $ty<T> {
            /// The handle back, if the task had not finished.
            pub fn into_handle(self) -> Option<JoinHandle<T>> {
                match self {
                    $ty::$pending(h) => Some(h),
                    $ty::Failed(_) => None,
                }
            }

            /// The task's error, if it finished without a value.
            pub fn into_join_error(self) -> Option<JoinError> {
                match self {
                    $ty::$pending(_) => None,
                    $ty::Failed(e) => Some(e),
                }
            }
        }

        impl<T> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $ty::$pending(_) => f.write_str(concat!(stringify!($pending), "(..)")),
                    $ty::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
                }
            }
        }

        impl<T> fmt::Display for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $ty::$pending(_) => f.write_str($msg),
                    $ty::Failed(e) => fmt::Display::fmt(e, f),
                }
            }
        }

        impl<T: Send + 'static> Error for $ty<T> {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                match self {
                    $ty::$pending(_) => None,
                    $ty::Failed(e) => Some(e),
                }
            }
        }
    };
}

join_wait_error!(JoinTimeoutError, Timeout, "timed out waiting for a task");
join_wait_error!(TryJoinError, NotFinished, "the task has not finished");

impl<T> JoinTimeoutError<T> {
    /// Whether the deadline passed (the task may still finish).
    pub fn is_timeout(&self) -> bool {
        matches!(self, JoinTimeoutError::Timeout(_))
    }
}

impl<T> TryJoinError<T> {
    /// Whether the task has not finished yet.
    pub fn is_not_finished(&self) -> bool {
        matches!(self, TryJoinError::NotFinished(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_task() {
        let e = JoinError::cancelled(CancelReason::DeadlineExceeded, Some("job".into()));
        assert_eq!(
            e.to_string(),
            "task 'job' was cancelled before it ran: deadline exceeded"
        );
        let io: io::Error = e.replicate().into();
        assert_eq!(io.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            Cancelled::from_io(&io).map(|c| c.reason()),
            Some(CancelReason::DeadlineExceeded)
        );
        let p = JoinError::panicked_message("boom".into(), None);
        assert_eq!(p.to_string(), "an unnamed task panicked: boom");
        let copy = p.replicate();
        assert_eq!(copy.panic_message(), Some("boom"));
        assert!(copy.into_panic().is_none(), "copies carry no payload");
    }

    #[test]
    fn submit_errors_hand_the_task_back() {
        let e = TrySubmitError::Shutdown(5);
        assert!(e.is_shutdown() && !e.is_full());
        assert_eq!(format!("{e:?}"), "Shutdown(..)");
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(SubmitTimeoutError::Timeout("x").into_inner(), "x");
    }
}
