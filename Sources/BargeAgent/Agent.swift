public import BargeCore
import BargeNetwork
import CBargeLinux
import Dispatch
import Foundation
import Glibc
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

/// The background agent: the supervisor, the network watchers, the drop-in watcher and the control socket, set up
/// in order and run as one service group. `barge agent` runs it until SIGTERM or SIGINT.
public enum Agent {
    /// Runs until asked to stop; returns after a graceful stop (transfers checkpointed, state written).
    ///
    /// SIGHUP reloads the manifests; SIGTERM and SIGINT stop. Speaks systemd's notify protocol when
    /// `NOTIFY_SOCKET` is set.
    public static func run(config: AgentConfig, configPath: String?) async throws {
        CBargeLinux_tune_malloc()
        // An upload's settle check takes a read lease for an instant; a writer opening the file in that instant makes
        // the kernel signal a lease break (SIGIO), whose default action would end the agent.
        signal(SIGIO, SIG_IGN)
        _ = CBargeLinux_raise_descriptor_limit()  // files gathering for group commit stay open
        let notifier = SystemdNotifier()
        // The drop-in directory is not created: a missing one is a problem to report and wait out (a configuration
        // tool swapping it), never an empty directory that would prune every job.
        let supervisor = try Supervisor(config: config, configPath: configPath, notifier: notifier)
        // The network is known before the first plan: no job starts on an uplink its entry may not use.
        var monitor: NetworkMonitor?
        // Overrides that cannot be read stop the start: one may say "metered".
        let overrides = try await supervisor.storedUplinkOverrides()
        // NetworkManager's and ModemManager's verdicts, read before the first plan too. No system bus: none.
        var desktop: DesktopNetworkWatcher?
        do {
            desktop = try DesktopNetworkWatcher(failed: { error in
                Log.error(
                    "NetworkManager and ModemManager: \(error) (their last verdicts stay in force; read again soon)"
                )
            })
        } catch {
            Log.debug("NetworkManager and ModemManager are not asked: \(error)")
        }
        do {
            let made = try NetworkMonitor(
                rules: config.networks,
                overrides: overrides,
                desktop: desktop?.facts ?? [:],
                changed: { supervisor.networkChanged(to: $0) },
                stopped: { error in
                    Log.error("the network monitor stopped (every transfer that needs the network waits): \(error)")
                }
            )
            await supervisor.monitorNetwork(made, snapshot: made.snapshot())
            monitor = made
        } catch {
            Log.error("the network is not monitored (every uplink counts as unmetered): \(error)")
            desktop = nil  // nothing to tell its verdicts to
        }
        try await supervisor.start()
        let watcher = try ManifestWatcher(directory: config.manifestDirectory) {
            supervisor.manifestsMayHaveChanged()
        }
        // Without `admin-group`, the agent's own group administers it (systemd's Group=barge), unless that is root's.
        let adminGroup = config.adminGroup ?? (getegid() != 0 ? String(getegid()) : nil)
        let access = await offThePool { ControlAccess.resolve(group: adminGroup) }
        let server = ControlServer(path: config.controlSocket, supervisor: supervisor, access: access)
        let bound: ControlServer.Server
        var metricsBound: (MetricsListener, MetricsListener.Server)?
        do {
            bound = try await server.bind()
            if let address = config.metricsListen {
                let listener = MetricsListener(address: address, supervisor: supervisor)
                do {
                    metricsBound = (listener, try await listener.bind())
                } catch {
                    try? await bound.channel.close()
                    unlink(config.controlSocket)
                    throw MetricsListenError(address: address, reason: "\(error)")
                }
            }
        } catch {
            Log.error("\(error)")
            watcher.cancel()
            desktop?.stop()
            monitor?.stop()
            await supervisor.stop()
            throw error
        }
        // The parts run as services of one group (swift-service-lifecycle). SIGTERM and SIGINT shut it down
        // gracefully, in the reverse of this order: the control socket and the metrics listener stop taking
        // requests, the drop-in watcher stops, then the network watchers, and last the supervisor checkpoints every
        // transfer and writes its state. SIGHUP reloads the manifests.
        var services: [any Service] = [
            SupervisorService(supervisor: supervisor),
            NetworkService(monitor: monitor, desktop: desktop),
            ManifestWatcherService(watcher: watcher),
            ControlService(server: server, bound: bound),
        ]
        if let (listener, bound) = metricsBound { services.append(MetricsService(listener: listener, bound: bound)) }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services.map { service in
                    // A server that fails (accept gives up) shuts the agent down in order, exit status 1, so that
                    // systemd restarts it whole, rather than cancelling the other parts mid-way.
                    ServiceGroupConfiguration.ServiceConfiguration(
                        service: service,
                        successTerminationBehavior: .gracefullyShutdownGroup,
                        failureTerminationBehavior: .gracefullyShutdownGroup
                    )
                },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: Log.logger
            )
        )
        notifier?.send("READY=1")
        Log.info("agent running: manifests in \(config.manifestDirectory), state in \(config.stateDirectory)")
        defer { unlink(config.controlSocket) }
        try await group.run()
    }
}
