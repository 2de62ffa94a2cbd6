//! Processes by pid: alive or not, command line, signals.

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(s) => match s.rfind(')') {
            Some(i) => !s[i + 1..].trim_start().starts_with('Z'),
            None => true,
        },
        Err(_) => false,
    }
}

/// The command line of a process, NUL separators replaced by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    std::fs::read(format!("/proc/{pid}/cmdline")).ok().map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
}

/// Send a signal; false when the process is gone.
pub fn signal(pid: u32, sig: i32) -> bool {
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(pid as i32, sig) == 0 }
}

/// Send a signal to a whole process group.
pub fn signal_group(pgid: u32, sig: i32) -> bool {
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(-(pgid as i32), sig) == 0 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_pid_is_alive() {
        assert!(super::alive(std::process::id()));
        assert!(!super::alive(0));
        assert!(super::cmdline(std::process::id()).is_some());
    }
}
