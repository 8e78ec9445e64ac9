//! Background work at a lower scheduling priority than the API calls.
//!
//! On Linux a nice value belongs to one thread, and a thread starts with its creator's: a
//! thread that lowers its own priority lowers that of the threads it starts (a runtime's
//! blocking threads), and of no other.

use std::io;

/// Raises the calling thread's nice value by `by` (at most to 19, the lowest priority) and
/// returns the new value. Lowering one's own priority needs no privilege. A no-op returning 0
/// where threads have no nice value of their own.
pub fn lower_current_thread(by: i32) -> io::Result<i32> {
    #[cfg(target_os = "linux")]
    {
        let now = current_thread_nice()?;
        let target = (now + by.max(0)).min(19);
        // SAFETY: plain system calls on this thread's own ID.
        let tid = unsafe { libc::gettid() } as libc::id_t;
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, target) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(target)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = by;
        Ok(0)
    }
}

/// The calling thread's nice value.
#[cfg(target_os = "linux")]
pub fn current_thread_nice() -> io::Result<i32> {
    // SAFETY: plain system calls on this thread's own ID; errno is this thread's.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        // -1 is both a valid nice value and the error return: errno tells them apart.
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
        if nice == -1 && *libc::__errno_location() != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(nice)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn only_the_calling_thread_and_those_it_starts_are_lowered() {
        let before = current_thread_nice().unwrap();
        let (lowered, seen, child) = std::thread::spawn(|| {
            let lowered = lower_current_thread(10).unwrap();
            let child = std::thread::spawn(|| current_thread_nice().unwrap()).join().unwrap();
            (lowered, current_thread_nice().unwrap(), child)
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (before + 10).min(19));
        assert_eq!(seen, lowered, "the thread's own nice value");
        assert_eq!(child, lowered, "a thread it starts inherits it");
        assert_eq!(current_thread_nice().unwrap(), before, "other threads keep theirs");
    }

    #[test]
    fn the_lowest_priority_is_as_far_as_it_goes() {
        let n = std::thread::spawn(|| lower_current_thread(40).unwrap()).join().unwrap();
        assert_eq!(n, 19);
    }
}
