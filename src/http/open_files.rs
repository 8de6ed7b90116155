//! The open files a gateway needs: one per connection it accepts (up to `[limits]
//! max_connections`), and a reserve for its store, its outgoing requests and its listeners.
//! Linux starts a process with a soft limit of 1,024 open files unless told otherwise (the
//! systemd unit sets `LimitNOFILE=65536`). Past the limit, an accept fails, and so does the
//! store's next open of a file (a checkpoint's), which stops the gateway: a flood of idle
//! connections would take it down. So `serve` raises the soft limit to the hard one, as Go's
//! runtime does for every program, and the public listener accepts at most the limit less
//! [`RESERVE`] (or half the limit, if that is less) connections, whatever `max_connections`
//! says (and warns when it says more).

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Open files kept beside the public listener's connections: the store's files, the admin
/// listener's and outgoing connections (HTTP, NATS), listeners, logs.
pub const RESERVE: usize = 1024;

/// Linux's default ceiling on one process's open files (`fs.nr_open`), for a hard limit of
/// "unlimited".
const CEILING: u64 = 1 << 20;

/// Raises the soft limit on open files to the hard one (`serve` calls it first).
pub fn raise() {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let target = hard.min(CEILING);
    if soft < target {
        match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            Ok(()) => tracing::info!(from = soft, to = target, "Raised the open files limit."),
            Err(err) => {
                tracing::warn!(limit = soft, error = %err, "Cannot raise the open files limit.")
            }
        }
    }
}

/// The most public connections the open files limit leaves room for.
pub fn connection_room() -> usize {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => room_within(usize::try_from(soft).unwrap_or(usize::MAX)),
        Err(_) => usize::MAX,
    }
}

/// `limit` less [`RESERVE`], or half of it for a limit under twice that (a container's 1,024:
/// 512 connections, not none).
fn room_within(limit: usize) -> usize {
    limit - RESERVE.min(limit / 2)
}

/// `max_connections`, or the room the open files limit leaves if that is less (logged).
pub fn cap(max_connections: usize, room: usize) -> usize {
    if max_connections > room {
        tracing::warn!(
            max_connections,
            accepted = room,
            "The open files limit leaves room for fewer connections than [limits] \
             max_connections (up to {RESERVE} kept for the store and outgoing requests, whose \
             opens must not fail): the public listener accepts at most {room}. Raise LimitNOFILE (or \
             ulimit -n) for more."
        );
        room
    } else {
        max_connections
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_keeps_a_reserve_of_1024_or_half_a_small_limit() {
        assert_eq!(room_within(65_536), 64_512);
        assert_eq!(room_within(4_096), 3_072);
        assert_eq!(room_within(1_300), 650);
        assert_eq!(room_within(1_024), 512);
        assert_eq!(room_within(0), 0);
    }

    #[test]
    fn the_cap_is_max_connections_within_the_room_left() {
        assert_eq!(cap(10_000, 64_512), 10_000);
        assert_eq!(cap(10_000, 200), 200);
        assert_eq!(cap(0, 200), 0);
    }
}
