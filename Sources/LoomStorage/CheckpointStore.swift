import Foundation

/// Which checkpoints survive: the newest `keepLast`, plus every step that is a multiple of
/// `milestoneEvery` (kept for good).
public struct CheckpointRetention: Equatable, Sendable {
    /// How many of the newest checkpoints to keep (at least 1).
    public var keepLast: Int
    /// Steps divisible by this are permanent milestones; nil or 0: none.
    public var milestoneEvery: Int?

    /// Keep the last `keepLast` (default 3) and, optionally, milestones.
    public init(keepLast: Int = 3, milestoneEvery: Int? = nil) {
        self.keepLast = max(1, keepLast)
        self.milestoneEvery = milestoneEvery
    }

    /// Whether `step` is a milestone.
    public func isMilestone(_ step: Int) -> Bool {
        guard let m = milestoneEvery, m > 0 else { return false }
        return step % m == 0
    }
}

/// A checkpoint file in a store's folder.
public struct StoredCheckpoint: Equatable, Sendable {
    /// Its step (from the file name).
    public var step: Int
    /// Its path.
    public var url: URL
}

/// A checkpoint `newestValid` passed over, and why.
public struct SkippedCheckpoint: Equatable, Sendable, CustomStringConvertible {
    /// The file.
    public var url: URL
    /// The one-line reason (names the file and the first problem found).
    public var reason: String
    /// The reason, for printing.
    public var description: String { reason }
}

/// How a training loop writes checkpoints (`CheckpointStore.save(_:mode:)`).
public enum CheckpointWriteMode: String, Sendable {
    /// `save`: the step waits for the whole write (errors surface at once).
    case foreground
    /// `saveInBackground`: the step waits only for a snapshot copy.
    case background
    /// Foreground while the last write took at most `automaticThreshold` (1 s)
    /// seconds, background once one took longer (the rule, measured where the run
    /// actually writes).
    case automatic

    /// The default: `automatic`. A W1 checkpoint (26 MB) takes 0.10–0.14 s to write on
    /// local disk (`loom bench checkpoint`), under the one-second threshold, so it stays in
    /// the foreground there; on a shared file system whose fsync takes seconds it switches
    /// to background writes, whose stall is a snapshot copy of a few milliseconds.
    public static let recommended: CheckpointWriteMode = .automatic
}

/// The checkpoints of one run (`RUN/checkpoints/`): atomic saves as `step-00001234.h5`
/// with a `latest` pointer, retention, background writes from a snapshot, and resume from
/// the newest file that verifies. Only rank 0 uses it.
public final class CheckpointStore: @unchecked Sendable {
    /// Test hook: a writer aborts (as if killed) once its temporary file reaches this many bytes.
    public static let abortAfterBytesVariable = "LOOM_TEST_ABORT_CHECKPOINT_AFTER_BYTES"
    /// Test hook: limits the abort to the save of this step.
    public static let abortAtStepVariable = "LOOM_TEST_ABORT_CHECKPOINT_AT_STEP"
    /// The pointer file's name: it holds the newest written checkpoint's file name.
    public static let latestName = "latest"

    /// The checkpoints folder.
    public let folder: URL
    /// What `prune()` keeps (applied after every save).
    public var retention: CheckpointRetention
    /// Seconds the last completed write took (temporary file, fsync, rename, pointer, pruning).
    public var lastWriteSeconds: Double { lock.withLock { lastSeconds } }

    private let queue = DispatchQueue(label: "loom.checkpoint-writer")
    private let lock = NSLock()
    private var backgroundResult: Result<URL, Error>?
    private var inFlight = 0
    private var lastSeconds = 0.0

    /// A store over `folder` (created if needed); temporary files that dead writers left
    /// there are removed.
    public init(folder: URL, retention: CheckpointRetention = CheckpointRetention()) throws {
        self.folder = folder.standardizedFileURL
        self.retention = retention
        do { try FileManager.default.createDirectory(at: self.folder, withIntermediateDirectories: true) } catch {
            throw StorageError.io(path: self.folder.path, operation: "create folder", reason: error.localizedDescription)
        }
        removeStaleTemporaries()
    }

    /// The store of run folder `run` (`run/checkpoints`).
    public convenience init(run: URL, retention: CheckpointRetention = CheckpointRetention()) throws {
        try self.init(folder: run.appendingPathComponent("checkpoints"), retention: retention)
    }

    // MARK: names

    /// `step-00001234.h5` (at least 8 digits, so names sort like steps).
    public static func fileName(step: Int) -> String { String(format: "step-%08d.h5", step) }

    /// The step in a checkpoint file name, or nil for any other name.
    public static func step(fileName name: String) -> Int? {
        guard name.hasPrefix("step-"), name.hasSuffix(".h5") else { return nil }
        let digits = name.dropFirst(5).dropLast(3)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(digits)
    }

    /// Where the checkpoint of `step` lives.
    public func url(step: Int) -> URL { folder.appendingPathComponent(CheckpointStore.fileName(step: step)) }

    /// The checkpoint files, oldest step first (temporary files are not listed).
    public func list() throws -> [StoredCheckpoint] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: folder.path) } catch {
            throw StorageError.io(path: folder.path, operation: "list", reason: error.localizedDescription)
        }
        return names.compactMap { n in CheckpointStore.step(fileName: n).map { StoredCheckpoint(step: $0, url: folder.appendingPathComponent(n)) } }
            .sorted { $0.step < $1.step }
    }

    /// The checkpoint the `latest` pointer names, if the pointer and the file exist.
    public func latest() -> URL? {
        guard let data = FileManager.default.contents(atPath: folder.appendingPathComponent(CheckpointStore.latestName).path)
        else { return nil }
        let name = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard CheckpointStore.step(fileName: name) != nil else { return nil }
        let url = folder.appendingPathComponent(name)
        return FileManager.default.fileExists(atPath: url.path) ? url : nil
    }

    // MARK: saving

    /// Writes `state` as `step-<step>.h5` and returns its path: into a temporary file in the
    /// same folder, flushed and fsynced, renamed into place, the folder fsynced; then the
    /// `latest` pointer is replaced the same way and retention applied. A kill at any
    /// moment leaves every earlier checkpoint intact. Waits for a background write first
    /// (and throws its error, if it failed).
    @discardableResult
    public func save(_ state: CheckpointState) throws -> URL {
        _ = try waitForPendingWrite()
        return try write(state)
    }

    /// Copies every tensor of `state` (the caller may change its tensors as soon as this
    /// returns) and writes the copy on a background thread. Throws a previous background
    /// write's error; `waitForPendingWrite()` collects this one's outcome.
    public func saveInBackground(_ state: CheckpointState) throws {
        _ = try waitForPendingWrite()
        final class Box: @unchecked Sendable { let state: CheckpointState; init(_ s: CheckpointState) { state = s } }
        let snapshot = Box(state.snapshot())
        lock.withLock { inFlight += 1 }
        queue.async {
            let result = Result { try self.write(snapshot.state) }
            self.lock.withLock {
                self.backgroundResult = result
                self.inFlight -= 1
            }
        }
    }

    /// The threshold: a write slower than this many seconds should not stall training.
    public static let backgroundThreshold = 1.0
    /// Seconds above which `.automatic` writes in the background (default `backgroundThreshold`).
    public var automaticThreshold = CheckpointStore.backgroundThreshold

    /// Saves in `mode`; returns the checkpoint's path when written in the foreground, nil when
    /// handed to the background writer.
    @discardableResult
    public func save(_ state: CheckpointState, mode: CheckpointWriteMode) throws -> URL? {
        switch mode {
        case .foreground: return try save(state)
        case .background: try saveInBackground(state); return nil
        case .automatic:
            _ = try waitForPendingWrite()  // so the last write's time is known
            if lastWriteSeconds > automaticThreshold {
                try saveInBackground(state)
                return nil
            }
            return try save(state)
        }
    }

    /// Whether a background write is still running.
    public var isWriting: Bool { lock.withLock { inFlight > 0 } }

    /// Waits for the background write, if any; returns its checkpoint's path (nil when there
    /// was none to collect) or throws its error.
    @discardableResult
    public func waitForPendingWrite() throws -> URL? {
        queue.sync {}
        let result = lock.withLock { () -> Result<URL, Error>? in
            defer { backgroundResult = nil }
            return backgroundResult
        }
        return try result?.get()
    }

    /// The whole write of one checkpoint, on whichever thread calls.
    private func write(_ state: CheckpointState) throws -> URL {
        let start = DispatchTime.now().uptimeNanoseconds
        let target = url(step: state.step)
        let temporary = folder.appendingPathComponent(".\(target.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        do {
            try CheckpointFile.write(state, to: temporary, afterTensor: CheckpointStore.abortHook(step: state.step, path: temporary))
            try CheckpointStore.publish(temporary, as: target.path)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            if let e = error as? StorageError, e.isDiskFull {
                var fs = statvfs()
                let free = statvfs(folder.path, &fs) == 0 ? Double(fs.f_bavail) * Double(fs.f_frsize) / 1e6 : 0
                throw StorageError.io(path: target.path, operation: "write checkpoint", reason: String(format:
                    "%@ (%.1f MB free in %@; the temporary file was removed, earlier checkpoints are intact)",
                    String(cString: strerror(ENOSPC)), free, folder.path))
            }
            throw error
        }
        try setLatest(target)
        try prune(keeping: target)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        lock.withLock { lastSeconds = seconds }
        return target
    }

    /// The crash-test hook when the environment asks for one for `step`: after each tensor,
    /// flush and abort once the temporary file has reached the given size.
    static func abortHook(step: Int, path: String) -> ((H5File) throws -> Void)? {
        guard let limitText = getenv(abortAfterBytesVariable), let limit = Int(String(cString: limitText)) else { return nil }
        if let stepText = getenv(abortAtStepVariable), Int(String(cString: stepText)) != step { return nil }
        return { file in
            try file.flush()
            var info = stat()
            if stat(path, &info) == 0, Int(info.st_size) >= limit {
                var none = rlimit(rlim_cur: 0, rlim_max: 0)
                setrlimit(Int32(RLIMIT_CORE.rawValue), &none)  // an intended abort needs no core dump
                signal(SIGABRT, SIG_DFL)  // nor the Swift runtime's crash report
                FileHandle.standardError.write(Data("checkpoint test hook: aborting after \(info.st_size) bytes of \(path)\n".utf8))
                abort()
            }
        }
    }

    /// Renames `temporary` onto `output` (replacing it atomically) and fsyncs the folder.
    static func publish(_ temporary: String, as output: String) throws {
        guard rename(temporary, output) == 0 else { throw StorageError.posix(output, "rename into place") }
        try Durable.fsync(URL(fileURLWithPath: output).deletingLastPathComponent().path)
    }

    /// Points `latest` at `checkpoint` (a small text file, replaced atomically).
    private func setLatest(_ checkpoint: URL) throws {
        let temporary = folder.appendingPathComponent(".\(CheckpointStore.latestName).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        guard FileManager.default.createFile(atPath: temporary, contents: Data((checkpoint.lastPathComponent + "\n").utf8)) else {
            throw StorageError.posix(temporary, "write")
        }
        do {
            try Durable.fsync(temporary)
            try CheckpointStore.publish(temporary, as: folder.appendingPathComponent(CheckpointStore.latestName).path)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
    }

    /// Applies the retention policy and returns the removed files. Never removes `keeping`
    /// or the file `latest` names.
    @discardableResult
    public func prune(keeping: URL? = nil) throws -> [URL] {
        let entries = try list()
        var keep = Set(entries.suffix(retention.keepLast).map(\.url.lastPathComponent))
        for e in entries where retention.isMilestone(e.step) { keep.insert(e.url.lastPathComponent) }
        if let keeping { keep.insert(keeping.lastPathComponent) }
        if let latest = latest() { keep.insert(latest.lastPathComponent) }
        var removed: [URL] = []
        for e in entries where !keep.contains(e.url.lastPathComponent) {
            guard unlink(e.url.path) == 0 else { throw StorageError.posix(e.url.path, "remove old checkpoint") }
            removed.append(e.url)
        }
        if !removed.isEmpty { try Durable.fsync(folder.path) }
        return removed
    }

    /// Removes temporary files of writers that are no longer running on this machine.
    public func removeStaleTemporaries() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else { return }
        for name in names where name.hasPrefix(".") && name.contains(".tmp-") {
            let fields = name.components(separatedBy: ".tmp-").last?.split(separator: "-") ?? []
            guard let pid = fields.first.flatMap({ Int32($0) }) else { continue }
            if pid == getpid() { continue }
            if kill(pid, 0) == 0 || errno == EPERM { continue }  // its writer may still run
            try? FileManager.default.removeItem(at: folder.appendingPathComponent(name))
        }
    }

    // MARK: loading

    /// Reads and verifies a checkpoint.
    public func load(_ url: URL) throws -> CheckpointState {
        try CheckpointFile.read(url.path)
    }

    /// The newest checkpoint (highest step) that verifies, or nil.
    public func newestValid() -> (url: URL, state: CheckpointState)? {
        var skipped: [SkippedCheckpoint] = []
        return newestValid(skipped: &skipped)
    }

    /// The newest checkpoint that verifies; every newer file that did not (corrupt,
    /// truncated, unfinished) is appended to `skipped` with its reason, newest first.
    public func newestValid(skipped: inout [SkippedCheckpoint]) -> (url: URL, state: CheckpointState)? {
        guard let entries = try? list() else { return nil }
        for e in entries.reversed() {
            do {
                return (e.url, try CheckpointFile.read(e.url.path))
            } catch {
                skipped.append(SkippedCheckpoint(url: e.url, reason: "\(error)"))
            }
        }
        return nil
    }
}

extension CheckpointStore {
    /// The checkpoint file a user means by `path`: the file itself, the file a `latest`
    /// pointer names, or the latest checkpoint of a checkpoints folder or run folder.
    public static func resolve(_ path: String) throws -> String {
        let url = URL(fileURLWithPath: path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw StorageError.missing(path: path, hint: "no such checkpoint, pointer or run folder")
        }
        if isDirectory.boolValue {
            for folder in [url.appendingPathComponent("checkpoints"), url] {
                if let store = try? CheckpointStore(folder: folder), let latest = store.latest() { return latest.path }
            }
            throw StorageError.missing(path: path + "/" + latestName, hint: "the folder has no latest checkpoint pointer")
        }
        if url.lastPathComponent == latestName {
            guard let target = try CheckpointStore(folder: url.deletingLastPathComponent()).latest() else {
                throw StorageError.badInput(path: path, detail: "the pointer names no existing checkpoint")
            }
            return target.path
        }
        return path
    }

    /// Reads the checkpoint `path` means (see `resolve`), verifying its checksums.
    public static func read(_ path: String) throws -> CheckpointState {
        try CheckpointFile.read(try resolve(path))
    }
}
