import BargeCore
import BargeTransfer
import Prometheus
import Synchronization

/// The agent's metrics in Prometheus's text format (swift-prometheus's registry), served as `GET /metrics` on the
/// control socket and, when configured, on a TCP listener. Counters move as events arrive; the gauges of jobs by
/// state are set when the metrics are read. Nothing here runs on a timer.
final class AgentMetrics: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let reconcileDuration: DurationHistogram
    private let netlinkEvents: Counter
    /// The netlink event count last added to ``netlinkEvents`` (the monitor counts on its own thread).
    private let netlinkEventsSeen = Mutex<UInt64>(0)

    /// Which way bytes went.
    enum Direction: String {
        case received, sent
    }

    init() {
        self.reconcileDuration = self.registry.makeDurationHistogram(
            descriptor: MetricNameDescriptor(
                namespace: "barge",
                metricName: "reconcile_duration",
                unitName: "seconds",
                helpText: "Time the reconciler took to plan and apply one pass."
            ),
            buckets: [
                .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5),
                .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                .milliseconds(250), .milliseconds(500), .seconds(1),
            ]
        )
        self.netlinkEvents = self.registry.makeCounter(
            descriptor: MetricNameDescriptor(
                namespace: "barge",
                metricName: "netlink_events",
                unitName: "total",
                helpText: "Netlink messages (links, addresses, routes, neighbours) the network monitor read."
            )
        )
    }

    /// `bytes` of a transfer went `direction` over `uplink` (an interface's name; `none` when not known) of cost
    /// `cost` (`unmetered`, `metered`, `roaming`; `none` for an interface that is not an uplink, such as `lo`).
    func transferred(_ bytes: UInt64, _ direction: Direction, uplink: String, cost: String) {
        guard bytes > 0 else { return }
        self.registry.makeCounter(
            descriptor: MetricNameDescriptor(
                namespace: "barge",
                metricName: "transferred_bytes",
                unitName: "total",
                helpText: "Bytes transferred, by direction, uplink and the uplink's cost class."
            ),
            labels: [("direction", direction.rawValue), ("uplink", uplink), ("cost", cost)]
        ).increment(by: Int64(clamping: bytes))
    }

    /// A transfer attempt failed with a failure of `kind`.
    func transferFailed(_ kind: TransferFailure.Kind) {
        self.registry.makeCounter(
            descriptor: MetricNameDescriptor(
                namespace: "barge",
                metricName: "transfer_errors",
                unitName: "total",
                helpText: "Failed transfer attempts, by class (transient: retried later; permanent: not retried)."
            ),
            labels: [("class", kind.rawValue)]
        ).increment()
    }

    /// A reconcile pass took `duration`.
    func reconciled(in duration: Duration) { self.reconcileDuration.record(duration) }

    /// The network monitor has read `total` netlink messages since it started.
    func netlinkEventsRead(_ total: UInt64) {
        let added = self.netlinkEventsSeen.withLock { seen in
            defer { seen = max(seen, total) }
            return total > seen ? total - seen : 0
        }
        if added > 0 { self.netlinkEvents.increment(by: Int64(clamping: added)) }
    }

    /// The text to serve, with the jobs counted by state now (every state, zero included).
    func exposition(jobsByState: [JobState: Int]) -> [UInt8] {
        for state in JobState.allCases {
            self.registry.makeGauge(
                descriptor: MetricNameDescriptor(
                    namespace: "barge",
                    metricName: "jobs",
                    unitName: "",
                    helpText: "Jobs by state."
                ),
                labels: [("state", state.rawValue)]
            ).set(to: Double(jobsByState[state] ?? 0))
        }
        var buffer: [UInt8] = []
        self.registry.emit(into: &buffer)
        return buffer
    }
}
