import Foundation

/// A launched child in its own process group, with its merged output read line by line.
final class LaunchedProcess: @unchecked Sendable {
    let pid: pid_t
    private let reader: Thread
    private var exitStatus: Int32?

    /// Starts `command` (looked up on PATH) with `environment` in a new process group; each
    /// output line goes to `onLine` on a reader thread.
    init(command: [String], environment: [String: String], onLine: @escaping @Sendable (String) -> Void) throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw CoordinatorError.spawn(command: command[0], reason: String(cString: strerror(errno))) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attr, 0)
        var none = sigset_t(); sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        var defaults = sigset_t(); sigemptyset(&defaults)
        for s in [SIGTERM, SIGUSR1, SIGINT, SIGPIPE] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        let argv = command.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawnp(&child, command[0], &actions, &attr, argv, envp)
        posix_spawn_file_actions_destroy(&actions)
        posix_spawnattr_destroy(&attr)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw CoordinatorError.spawn(command: command[0], reason: String(cString: strerror(rc)))
        }
        pid = child
        let readFD = fds[0]
        reader = Thread {
            let handle = FileHandle(fileDescriptor: readFD, closeOnDealloc: true)
            var pending = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let nl = pending.firstIndex(of: 10) {
                    onLine(String(decoding: pending[pending.startIndex..<nl], as: UTF8.self))
                    pending.removeSubrange(pending.startIndex...nl)
                }
            }
            if !pending.isEmpty { onLine(String(decoding: pending, as: UTF8.self)) }
        }
        reader.start()
    }

    /// The exit status (128+signal when killed) once the child ended, without waiting.
    func poll() -> Int32? {
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        guard r == pid else { return nil }
        let signalled = status & 0x7f
        exitStatus = signalled == 0 ? (status >> 8) & 0xff : 128 + signalled
        return exitStatus
    }

    /// Waits until the output pipe is drained (every writer has exited) or `seconds` passed.
    func drainOutput(seconds: Double) {
        let end = Date().addingTimeInterval(seconds)
        while !reader.isFinished && Date() < end { usleep(20_000) }
    }
}

/// Processes on this machine, read from /proc: which descend from a pid, which still run.
enum ProcessTable {
    /// (pid, parent, start time in clock ticks, state) of every process.
    static func snapshot() -> [(pid: pid_t, ppid: pid_t, start: UInt64, state: Character)] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return names.compactMap { name in
            guard let pid = pid_t(name), let s = stat(pid) else { return nil }
            return (pid, s.ppid, s.start, s.state)
        }
    }

    /// Parent, start time and state from `/proc/PID/stat`.
    static func stat(_ pid: pid_t) -> (ppid: pid_t, start: UInt64, state: Character)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let state = fields[0].first, let ppid = pid_t(fields[1]), let start = UInt64(fields[19]) else { return nil }
        return (ppid, start, state)
    }

    /// Whether `pid` (with this start time, so a reused pid does not count) still runs; a zombie does not.
    static func alive(_ pid: pid_t, start: UInt64?) -> Bool {
        guard let s = stat(pid) else { return false }
        if s.state == "Z" || s.state == "X" { return false }
        if let start, s.start != start { return false }
        return true
    }

    /// Every process below `root` (children, grandchildren …).
    static func descendants(of root: pid_t) -> [(pid: pid_t, start: UInt64)] {
        let all = snapshot()
        var children: [pid_t: [(pid_t, UInt64)]] = [:]
        for p in all { children[p.ppid, default: []].append((p.pid, p.start)) }
        var out: [(pid: pid_t, start: UInt64)] = []
        var queue = [root]
        while let p = queue.popLast() {
            for (c, s) in children[p] ?? [] { out.append((c, s)); queue.append(c) }
        }
        return out
    }
}

/// The pids a launch created, remembered while it runs, so that every one can be killed
/// even after mpirun is gone (ranks outlive it by seconds).
final class ProcessSet {
    private(set) var known: [pid_t: UInt64] = [:]

    /// Remembers `pid` (with its start time).
    func add(_ pid: pid_t) {
        if known[pid] == nil, let s = ProcessTable.stat(pid) { known[pid] = s.start }
    }

    /// Remembers every current descendant of `root`.
    func addDescendants(of root: pid_t) {
        for d in ProcessTable.descendants(of: root) where known[d.pid] == nil { known[d.pid] = d.start }
    }

    /// The remembered processes still running.
    var alive: [pid_t] { known.filter { ProcessTable.alive($0.key, start: $0.value) }.map(\.key).sorted() }

    /// SIGKILLs every remembered process still running (and the launcher's group), then waits
    /// up to `seconds` for them to be gone; returns the pids that are still there.
    func killAll(group: pid_t, seconds: Double) -> [pid_t] {
        let end = Date().addingTimeInterval(seconds)
        repeat {
            kill(-group, SIGKILL)
            for p in alive { kill(p, SIGKILL) }
            usleep(100_000)
        } while !alive.isEmpty && Date() < end
        return alive
    }
}
