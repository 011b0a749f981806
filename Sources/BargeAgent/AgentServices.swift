import BargeNetwork
import Logging
import ServiceLifecycle
import UnixSignals

/// The supervisor as a service: it runs from before the group starts (its first plan needs the network) until the
/// group shuts down, when it checkpoints every transfer and writes its state; SIGHUP reloads the manifests.
struct SupervisorService: Service, CustomStringConvertible {
    let supervisor: Supervisor
    var description: String { "supervisor" }

    func run() async throws {
        let reloads = await UnixSignalsSequence(trapping: .sighup)
        for await _ in reloads.cancelOnGracefulShutdown() {
            Log.info("SIGHUP: reloading the manifests")
            await self.supervisor.reloadManifests()
        }
        Log.info("stopping")
        await self.supervisor.stop()
    }
}

/// The netlink monitor and the NetworkManager/ModemManager watcher: their threads run until the group shuts down.
struct NetworkService: Service, CustomStringConvertible {
    let monitor: NetworkMonitor?
    let desktop: DesktopNetworkWatcher?
    var description: String { "network monitor" }

    func run() async throws {
        self.monitor?.start()
        if let monitor = self.monitor { self.desktop?.start { monitor.setDesktopFacts($0) } }
        try? await gracefulShutdown()
        // Each stop waits for its thread (the D-Bus one may be in a call for up to 5 s): not on the task pool.
        let (monitor, desktop) = (self.monitor, self.desktop)
        await offThePool {
            desktop?.stop()
            monitor?.stop()
        }
    }
}

/// The drop-in directory's watcher (inotify): until the group shuts down.
struct ManifestWatcherService: Service, CustomStringConvertible {
    let watcher: ManifestWatcher
    var description: String { "drop-in watcher" }

    func run() async throws {
        try? await gracefulShutdown()
        self.watcher.cancel()
    }
}

/// The control socket, bound before the group starts: served until the group shuts down.
struct ControlService: Service, CustomStringConvertible {
    let server: ControlServer
    let bound: ControlServer.Server
    var description: String { "control socket" }

    func run() async throws {
        try await servedUntilShutdown { try await self.server.serve(self.bound) }
    }
}

/// The optional TCP metrics listener, bound before the group starts: served until the group shuts down.
struct MetricsService: Service, CustomStringConvertible {
    let listener: MetricsListener
    let bound: MetricsListener.Server
    var description: String { "metrics listener" }

    func run() async throws {
        try await servedUntilShutdown { try await self.listener.serve(self.bound) }
    }
}

/// Runs a server until the group shuts down; the cancellation that stops it then is the expected end, not an error
/// (which would cancel the group instead of letting the next service stop gracefully).
private func servedUntilShutdown(_ serve: @escaping @Sendable () async throws -> Void) async throws {
    do {
        try await cancelWhenGracefulShutdown { try await serve() }
    } catch is CancellationError {
        guard Task.isShuttingDownGracefully else { throw CancellationError() }
    }
}
