import Testing

@testable import BargeCore

@Suite("AgentConfigParser")
struct AgentConfigParserTests {
    let parser = AgentConfigParser(defaults: .defaults(scope: .system))

    @Test func readsEveryKey() throws {
        let parsed = self.parser.parse(
            text: """
                manifests: manifests.d
                state-dir: /var/lib/barge-test
                control-socket: /run/barge-test.sock
                allowed-roots: [/srv, ../data]
                allowed-schemes: [https, FILE]
                concurrency: {total: 3, per-host: 2}
                bandwidth:
                  - {at: "08:00", days: [mon-fri], limit: {low: 1MiB/s, normal: 4MiB/s}}
                  - {at: "18:00", limit: off}
                networks:
                  - {match: {interface: "wwan*"}, cost: metered}
                  - {match: {kind: tether}, cost: metered, roaming: false}
                  - {match: {gateway: 192.168.8.1, gateway-mac: "AA:BB:CC:00:11:22"}, cost: metered}
                yield: {enabled: false, capacity: 20Mbit/s, lower-effort: false, threshold: 10%, floor: 1%, climb: 30s}
                hooks: {on-complete: [/usr/bin/true]}
                proxy: http://127.0.0.1:3128
                link-grace: 5s
                """,
            path: "/etc/barge/barge.yaml"
        )
        #expect(parsed.diagnostics.isEmpty, "\(parsed.diagnostics)")
        let config = parsed.config
        #expect(config.manifestDirectory == "/etc/barge/manifests.d")
        #expect(config.allowedRoots == ["/srv", "/etc/data"])
        #expect(config.allowedSchemes == ["https", "file"])
        #expect(config.concurrency.total == 3 && config.concurrency.perHost == 2)
        #expect(config.bandwidth.count == 2)
        #expect(config.bandwidth[0].at == 480)
        #expect(config.bandwidth[0].perPriority[.normal] == .limited(ByteRate(bytesPerSecond: 4 << 20)))
        #expect(config.bandwidth[1].total == .off)
        #expect(config.networks[1] == NetworkRule(kind: .tether, cost: .metered, roaming: false))
        #expect(
            config.networks[2] == NetworkRule(gateway: "192.168.8.1", gatewayMAC: "aa:bb:cc:00:11:22", cost: .metered)
        )
        #expect(config.yield.capacity == ByteRate(bytesPerSecond: 2_500_000))
        #expect(config.yield.enabled == false)
        #expect(config.yield.lowerEffort == false)
        #expect(config.yield.threshold == 0.1 && config.yield.floor == 0.01 && config.yield.climb.seconds == 30)
        #expect(config.hooks.onComplete == ["/usr/bin/true"])
        #expect(config.proxy == "http://127.0.0.1:3128")
        #expect(config.linkGrace == TimeSpan(seconds: 5))
        #expect(AgentConfig.defaults(scope: .system).linkGrace == TimeSpan(seconds: 2))
    }

    @Test func badKeysKeepTheirDefaultsAndAreReported() {
        let parsed = self.parser.parse(
            text: """
                allowed-schemes: [https, gopher]
                concurency: {total: 3}
                concurrency: {total: 0}
                networks: [{match: {interface: "wwan*"}, cost: pricey}]
                link-grace: 1h
                yield: {threshold: 60%}
                """,
            path: "/etc/barge/barge.yaml"
        )
        #expect(parsed.config == AgentConfig.defaults(scope: .system))
        #expect(
            parsed.diagnostics.map { "\($0.location.line):\($0.location.column)" } == [
                "1:26", "2:1", "3:22", "4:48", "5:13", "6:20",
            ]
        )
        let climb = self.parser.parse(text: "yield: {climb: 0s}", path: "/etc/barge/barge.yaml")
        #expect(climb.diagnostics.map(\.message) == ["'climb' must be from 1s to 10m"])
        #expect(parsed.diagnostics[1].message.contains("did you mean 'concurrency'?"))
    }

    /// A gateway is kept as the kernel prints it (an IPv6 link-local one without its zone), so that it matches;
    /// one that is not an address, or a MAC that is not one, is an error at its place.
    @Test func gatewaysAreCanonicalAndCheckedWhereTheyAre() {
        let parsed = self.parser.parse(
            text: """
                networks:
                  - {match: {gateway: "FE80:0:0::1%wlan0"}, cost: metered}
                  - {match: {gateway: 192.168.8.1}, cost: metered}
                """,
            path: "/etc/barge/barge.yaml"
        )
        #expect(parsed.diagnostics.isEmpty, "\(parsed.diagnostics)")
        #expect(parsed.config.networks.map(\.gateway) == ["fe80::1", "192.168.8.1"])
        for (rule, column, expected) in [
            ("{match: {gateway: router.lan}, cost: metered}", 23, "IPv4 or IPv6 address"),
            ("{match: {gateway-mac: \"aa:bb:cc:00:11\"}, cost: metered}", 27, "six hex pairs"),
        ] {
            let bad = self.parser.parse(text: "networks:\n  - \(rule)\n", path: "/etc/barge/barge.yaml")
            #expect(bad.diagnostics.map { "\($0.location.line):\($0.location.column)" } == ["2:\(column)"])
            #expect(bad.diagnostics.first?.message.contains(expected) == true, "\(bad.diagnostics)")
            #expect(bad.config.networks.isEmpty)
        }
    }

    /// `metrics-listen`: off by default; a port alone is loopback; an address must be numeric, a port in range.
    @Test func metricsListenIsOffByDefaultAndLoopbackForAPort() {
        #expect(AgentConfig.defaults(scope: .system).metricsListen == nil)
        for (text, expected) in [
            ("9477", "127.0.0.1:9477"), ("\"0.0.0.0:9100\"", "0.0.0.0:9100"), ("\"[::1]:9477\"", "[::1]:9477"),
        ] {
            let parsed = self.parser.parse(text: "metrics-listen: \(text)", path: "/etc/barge/barge.yaml")
            #expect(parsed.diagnostics.isEmpty, "\(parsed.diagnostics)")
            #expect(parsed.config.metricsListen?.description == expected)
        }
        for text in ["0", "70000", "localhost:9477", "\"::1:9477\"", "\"[127.0.0.1]:9477\"", "[9477]"] {
            let parsed = self.parser.parse(text: "metrics-listen: \(text)", path: "/etc/barge/barge.yaml")
            #expect(parsed.config.metricsListen == nil, "\(text)")
            #expect(parsed.diagnostics.map { "\($0.location.line):\($0.location.column)" } == ["1:17"], "\(text)")
        }
    }

    /// A file may lie below an allowed root but not be one (were the root missing, the file would be made in its
    /// parent); a directory or a glob's directory may be a root.
    @Test func aFileIsNeverAnAllowedRootItself() {
        var config = AgentConfig.defaults(scope: .system)
        config.allowedRoots = ["/srv", "/var/lib/"]
        #expect(config.fileProblem("/srv") == .allowedRootItself("/srv"))
        #expect(config.fileProblem("/var/lib") == .allowedRootItself("/var/lib/"))
        #expect(config.fileProblem("/srv/a.bin") == nil)
        #expect(config.fileProblem("/srvx") == .outsideAllowedRoots(["/srv", "/var/lib/"]))
        #expect(config.pathProblem("/srv") == nil)
        config.allowedRoots = ["/"]
        #expect(config.fileProblem("/") == .allowedRootItself("/"))
        #expect(config.fileProblem("/srv") == nil)
    }

    @Test func userDefaultsFollowXDG() {
        let environment = UserEnvironment(variables: ["HOME": "/home/ada", "XDG_RUNTIME_DIR": "/run/user/1000"])
        let config = AgentConfig.defaults(scope: .user, environment: environment)
        #expect(config.manifestDirectory == "/home/ada/.config/barge/manifests.d")
        #expect(config.stateDirectory == "/home/ada/.local/state/barge")
        #expect(config.controlSocket == "/run/user/1000/barge.sock")
        #expect(config.allowedRoots == ["/home/ada"])
        #expect(AgentConfig.defaultPath(scope: .user, environment: environment) == "/home/ada/.config/barge/barge.yaml")
    }
}
