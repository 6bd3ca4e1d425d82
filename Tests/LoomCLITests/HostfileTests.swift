import LoomCoordinator
import Testing

/// Open MPI hostfiles as `loom train --hostfile` reads them.
@Suite struct HostfileTests {
    @Test func hostsSlotsAndComments() throws {
        let hosts = try HostEntry.parse(hostfile: "# cluster\nnode0 slots=2\n\n  node1 slots=4 max_slots=8  # big\nnode2\n", path: "h")
        #expect(hosts == [HostEntry(name: "node0", slots: 2), HostEntry(name: "node1", slots: 4), HostEntry(name: "node2", slots: nil)])
    }

    @Test func mistakesAreOneLineNamingTheFileAndLine() {
        #expect(throws: CoordinatorError.hostfile(path: "h", reason: "names no hosts (expected lines like 'node0 slots=2')")) {
            try HostEntry.parse(hostfile: "# only a comment\n\n", path: "h")
        }
        #expect(throws: CoordinatorError.hostfile(path: "h", reason: "line 2: 'slots=0' must be a positive slot count")) {
            try HostEntry.parse(hostfile: "a\nb slots=0\n", path: "h")
        }
        #expect(throws: CoordinatorError.hostfile(path: "h", reason: "line 1: unknown field 'cpus=2' (expected 'HOST [slots=N]')")) {
            try HostEntry.parse(hostfile: "a cpus=2\n", path: "h")
        }
    }
}
