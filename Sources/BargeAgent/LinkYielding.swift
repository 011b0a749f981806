import BargeCore

/// The yield controllers of the links that carry yielding transfers (normal and low priority, bound to an
/// interface), fed a sample of each link on every tick while any such transfer runs. Holds no I/O: the supervisor
/// reads the counters and applies the budgets.
struct LinkYielding: Sendable {
    /// How often the links are sampled while yielding transfers run.
    static let interval: Duration = .milliseconds(250)

    let settings: YieldController.Settings
    /// Per interface.
    private(set) var controllers: [String: YieldController] = [:]

    init(settings: YieldController.Settings) { self.settings = settings }

    /// Takes one sample of each link in `links` (its counter in the transfers' direction, and Barge's bytes on it;
    /// a link whose counter cannot be read is skipped) and forgets the others. Returns the budgets that changed,
    /// those of forgotten links (back to `off`) included.
    mutating func sample(
        _ links: Set<String>,
        at time: Double,
        linkBytes: (String) -> UInt64?,
        bargeBytes: (String) -> UInt64
    ) -> [(link: String, budget: RateLimit)] {
        var changed: [(link: String, budget: RateLimit)] = []
        for (link, controller) in self.controllers where !links.contains(link) {
            if controller.budget != .off { changed.append((link, .off)) }
            self.controllers[link] = nil
        }
        for link in links.sorted() {
            guard let bytes = linkBytes(link) else { continue }
            var controller = self.controllers[link] ?? YieldController(settings: self.settings)
            if controller.sample(at: time, linkBytes: bytes, bargeBytes: bargeBytes(link)) {
                changed.append((link, controller.budget))
            }
            self.controllers[link] = controller
        }
        return changed
    }

    /// What a job on `link` is told while its link is shared: `yielding to other traffic: 41 Mbit/s in use`, or
    /// `climbing back after other traffic`; nil while its transfers are not held back.
    func note(for link: String) -> String? {
        guard let controller = self.controllers[link], controller.budget != .off else { return nil }
        switch controller.state {
        case .yielding(let other): return "yielding to other traffic: \(Self.bits(other)) in use"
        case .clear: return "climbing back after other traffic"
        }
    }

    /// A rate in bits per second for people, as links are spoken of: `41 Mbit/s`, `820 kbit/s`.
    static func bits(_ bytesPerSecond: Double) -> String {
        let bits = bytesPerSecond * 8
        if bits >= 1e9 { return "\(Self.oneDecimal(bits / 1e9)) Gbit/s" }
        if bits >= 1e6 { return "\(Self.oneDecimal(bits / 1e6)) Mbit/s" }
        return "\(Int(bits / 1e3)) kbit/s"
    }

    /// `41`, `4.1`.
    private static func oneDecimal(_ value: Double) -> String {
        value >= 10 ? String(Int(value.rounded())) : String(Double(Int((value * 10).rounded())) / 10)
    }
}
