public import BargeCore
internal import CNetlink
import Foundation
import Glibc
import Synchronization

/// An uplink: an interface that is up, has an address and carries a default route, with its verdict.
public struct Uplink: Hashable, Sendable {
    /// The interface's index.
    public var index: Int32
    /// What the kernel says about it.
    public var facts: InterfaceFacts
    /// The address families it has a default route and an address for.
    public var families: Set<AddressFamily>
    /// Its kind, cost and roaming, each with its source.
    public var verdict: UplinkVerdict

    /// An uplink.
    public init(index: Int32, facts: InterfaceFacts, families: Set<AddressFamily>, verdict: UplinkVerdict) {
        self.index = index
        self.facts = facts
        self.families = families
        self.verdict = verdict
    }
}

/// The path to one origin: how its jobs meet the network, and the interface their traffic leaves by.
public struct OriginPath: Hashable, Sendable {
    /// The view the reconciler takes for the origin's jobs.
    public var view: NetworkView
    /// The uplink's name; nil without a route, or for this machine.
    public var interface: String?
    /// A cheaper uplink than the one the kernel's routes pick, which reaches the origin too (a default route of
    /// the address's family): `interface` then names it; nil: as routed.
    public var bind: String?

    /// A path.
    public init(view: NetworkView, interface: String? = nil, bind: String? = nil) {
        self.view = view
        self.interface = interface
        self.bind = bind
    }
}

/// IPv4 or IPv6.
public enum AddressFamily: String, Hashable, Sendable, Codable, Comparable {
    case ipv4, ipv6

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// The uplinks at one instant, by interface name.
public struct NetworkSnapshot: Hashable, Sendable {
    /// Every uplink, in name order.
    public var uplinks: [Uplink]

    /// A snapshot.
    public init(uplinks: [Uplink]) { self.uplinks = uplinks }
}

/// A netlink call that failed.
public struct NetlinkError: Error, CustomStringConvertible {
    /// What was being done.
    public var call: String
    /// libnl's error text.
    public var reason: String
    public var description: String { "netlink: \(self.call): \(self.reason)" }

    static func check(_ code: Int32, _ call: String) throws(NetlinkError) {
        guard code < 0 else { return }
        throw NetlinkError(call: call, reason: String(cString: nl_geterror(code)))
    }
}

/// Watches the kernel's links, addresses and routes through libnl-route-3's cache manager on a thread of its own,
/// and reports the set of uplinks whenever it changes. It sleeps in `poll(2)` until the kernel sends an event: no
/// timer, no polling. A burst of messages (a roam sends dozens) is read whole before the uplinks are worked out
/// once.
public final class NetworkMonitor: @unchecked Sendable {
    private var manager: OpaquePointer?
    private var links: OpaquePointer?
    private var addresses: OpaquePointer?
    private var routes: OpaquePointer?
    /// The neighbour table, for the gateways' link-layer addresses (`gateway-mac` rules). Kept by its events alone:
    /// it is not read again per burst.
    private var neighbours: OpaquePointer?
    /// Whether the burst being read changed links, addresses or routes (not only neighbours); on the monitor's
    /// thread.
    private var needsRefill = false
    /// The socket the caches are read again through (see ``refill()``).
    private var dumps: OpaquePointer?
    /// A pipe whose write end stops the thread.
    private let wakeup: WakeupPipe
    private let rules: [NetworkRule]
    /// Verdicts set by hand (``setOverride(_:for:)``); on the monitor's thread.
    private var overrides: [String: UplinkOverride]
    /// What NetworkManager and ModemManager say, by interface (``setDesktopFacts(_:)``); on the monitor's thread.
    private var desktop: [String: DesktopNetworkFacts]
    private let changed: @Sendable (NetworkSnapshot) -> Void
    private let stopped: @Sendable (NetlinkError) -> Void
    private var last: NetworkSnapshot?
    /// The gateways asked for their MAC that have not answered yet, by interface index.
    private var promptedGateways: [Int32: String] = [:]
    private let thread = LoopThread(name: "barge-netlink")
    /// Work handed to the monitor's thread (``onThread(_:)``), and whether it is to stop; under `lock`.
    private var requests: [@Sendable () -> Void] = []
    private var stopping = false
    /// Set by ``start()``: work is then handed to the thread (under `lock`).
    private var started = false
    /// Set when the monitor could not go on: no path is known any more (under `lock`).
    private var hasFailed = false
    /// Set when the thread has ended (stopped, or netlink failed): work is then done on the caller's thread.
    private var ended = false
    private let lock = NSLock()
    /// Netlink messages read since the monitor started (for the agent's metrics).
    private let messagesRead = Atomic<UInt64>(0)

    /// Netlink messages read since the monitor started: links, addresses, routes and neighbours.
    public var eventsRead: UInt64 { self.messagesRead.load(ordering: .relaxed) }

    /// Fills the caches from the kernel (so ``snapshot()`` answers at once); ``start()`` begins watching.
    /// `changed` runs on the monitor's thread with each new set of uplinks, the first included; `stopped`, if the
    /// monitor cannot go on (after telling `changed` that no uplink is left).
    public init(
        rules: [NetworkRule],
        overrides: [String: UplinkOverride] = [:],
        desktop: [String: DesktopNetworkFacts] = [:],
        changed: @escaping @Sendable (NetworkSnapshot) -> Void = { _ in },
        stopped: @escaping @Sendable (NetlinkError) -> Void = { _ in }
    ) throws(NetlinkError) {
        self.rules = rules
        self.overrides = overrides
        self.desktop = desktop
        self.stopped = stopped
        self.changed = changed
        guard let wakeup = WakeupPipe() else {
            throw NetlinkError(call: "pipe", reason: String(cString: strerror(errno)))
        }
        self.wakeup = wakeup
        // A failure below throws; deinit still runs for this instance (every property is set) and frees what was made.
        try NetlinkError.check(
            nl_cache_mngr_alloc(nil, NETLINK_ROUTE, NL_AUTO_PROVIDE, &self.manager),
            "nl_cache_mngr_alloc"
        )
        // Per object, only a note of what changed: the uplinks are worked out once the whole burst is read.
        let refill: change_func_t = { _, _, _, monitor in
            guard let monitor else { return }
            Unmanaged<NetworkMonitor>.fromOpaque(monitor).takeUnretainedValue().needsRefill = true
        }
        let ignore: change_func_t = { _, _, _, _ in }
        let me = Unmanaged.passUnretained(self).toOpaque()
        try NetlinkError.check(nl_cache_mngr_add(self.manager, "route/link", refill, me, &self.links), "links")
        try NetlinkError.check(
            nl_cache_mngr_add(self.manager, "route/addr", refill, me, &self.addresses),
            "addresses"
        )
        try NetlinkError.check(nl_cache_mngr_add(self.manager, "route/route", refill, me, &self.routes), "routes")
        try NetlinkError.check(
            nl_cache_mngr_add(self.manager, "route/neigh", ignore, nil, &self.neighbours),
            "neighbours"
        )
        self.dumps = nl_socket_alloc()
        try NetlinkError.check(nl_connect(self.dumps, NETLINK_ROUTE), "nl_connect")
    }

    deinit { self.release() }

    private func release() {
        if let manager { nl_cache_mngr_free(manager) }
        self.manager = nil
        if let dumps { nl_socket_free(dumps) }
        self.dumps = nil
    }

    /// Starts the monitor's thread; it reports the current uplinks first. A started monitor lives until
    /// ``stop()``.
    public func start() {
        self.lock.withLock { self.started = true }
        self.thread.start(self) { $0.run() }
    }

    /// Stops the thread and waits for it.
    public func stop() {
        self.thread.stop {
            self.lock.withLock { self.stopping = true }
            self.wake()
        }
    }

    private func wake() { self.wakeup.wake() }

    /// Runs `body` on the monitor's thread (where the caches may be read) and returns what it returns; at once on
    /// the caller's thread when the monitor is not running.
    public func onThread<Result: Sendable>(_ body: @escaping @Sendable (NetworkMonitor) -> Result) async -> Result {
        guard self.lock.withLock({ self.started }) else { return body(self) }
        return await withCheckedContinuation { continuation in
            let queued = self.lock.withLock {
                guard !self.ended else { return false }
                self.requests.append { continuation.resume(returning: body(self)) }
                return true
            }
            if queued { self.wake() } else { continuation.resume(returning: body(self)) }
        }
    }

    /// How the jobs of each origin meet the network: the uplink traffic to it leaves by and its verdict, or no
    /// route. `addresses` are the origins' numeric addresses by ``JobSpec/host`` (`this machine` needs none; see
    /// ``addresses(of:)``). On the monitor's thread.
    public func paths(to addresses: [String: String]) -> [String: OriginPath] {
        var paths: [String: OriginPath] = [:]
        guard !self.lock.withLock({ self.hasFailed }) else { return paths }
        for (host, address) in addresses {
            guard host != "this machine" else {
                paths[host] = OriginPath(view: .online(cost: .unmetered, roaming: false, via: "this machine"))
                continue
            }
            guard let routed = self.egress(to: address) else {
                paths[host] = OriginPath(view: .unreachable(host))
                continue
            }
            // A cheaper uplink that can reach the origin too (a route by it allows: the kernel is asked with the
            // probe bound to it) carries the origin's new connections instead.
            let family: AddressFamily = address.contains(":") ? .ipv6 : .ipv4
            let cheaper = self.last?.uplinks
                .filter {
                    $0.index != routed.index && $0.families.contains(family)
                        && $0.verdict.price < routed.verdict.price
                }
                .sorted { ($0.verdict.price, $0.facts.name) < ($1.verdict.price, $1.facts.name) }
                .first { Self.sourceAddress(to: address, boundTo: $0.facts.name) != nil }
            let uplink = cheaper ?? routed
            let verdict = uplink.verdict
            let source = verdict.roaming ? verdict.roamingSource : verdict.costSource
            paths[host] = OriginPath(
                view: .online(
                    cost: verdict.cost,
                    roaming: verdict.roaming,
                    via: uplink.facts.name + (cheaper == nil ? "" : " (cheaper than \(routed.facts.name))")
                        + ", \(source)"
                ),
                interface: uplink.facts.name,
                bind: cheaper?.facts.name
            )
        }
        return paths
    }

    /// The numeric address of each origin (``JobSpec/host`` values: `name`, `name:port`, `[v6]:port`), looked up
    /// through the system's resolver, each on a thread of its own (a slow resolver holds up neither the monitor
    /// nor the other names); a name that does not resolve is left out. `this machine` maps to itself.
    public static func addresses(of hosts: [String]) async -> [String: String] {
        await withTaskGroup(of: (String, String?).self) { group in
            for host in hosts {
                group.addTask {
                    if host == "this machine" { return (host, host) }
                    let name = Self.hostName(host)
                    if Self.isNumericAddress(name) { return (host, name) }
                    return (host, await Self.resolveOffThePool(name))
                }
            }
            var found: [String: String] = [:]
            for await (host, address) in group { if let address { found[host] = address } }
            return found
        }
    }

    private static func resolveOffThePool(_ name: String) async -> String? {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: Self.address(of: name)) }
        }
    }

    /// Sets or clears (`auto` for both) the verdict on an interface by hand, and reports the uplinks again. On the
    /// monitor's thread.
    public func setOverride(_ override: UplinkOverride, for interface: String) {
        if override.cost == nil, override.roaming == nil {
            self.overrides.removeValue(forKey: interface)
        } else {
            self.overrides[interface] = override
        }
        self.report(refilling: self.needsRefill)
    }

    /// Takes what NetworkManager and ModemManager say now (from any thread), and reports the uplinks again on the
    /// monitor's thread when their verdicts change. Facts handed over in order take effect in that order.
    public func setDesktopFacts(_ facts: [String: DesktopNetworkFacts]) {
        let apply: @Sendable () -> Void = {
            self.desktop = facts
            self.report(refilling: self.needsRefill)
        }
        // Before start() the facts come through init; after the thread ended there is no one to tell (and the
        // caches are read on callers' threads then, without a lock): either way they are not taken here.
        let queued = self.lock.withLock {
            guard self.started, !self.ended else { return false }
            self.requests.append(apply)
            return true
        }
        if queued { self.wake() }
    }

    /// The numeric address of `host` (a ``JobSpec/host`` value) when it names one (no look-up needed); nil for
    /// a name.
    public static func numericAddress(of host: String) -> String? {
        let name = Self.hostName(host)
        return Self.isNumericAddress(name) ? name : nil
    }

    /// The name in `host[:port]` or `[v6]:port`.
    static func hostName(_ host: String) -> String {
        if host.hasPrefix("["), let end = host.firstIndex(of: "]") {
            return String(host[host.index(after: host.startIndex)..<end])
        }
        if host.filter({ $0 == ":" }).count == 1, let colon = host.firstIndex(of: ":") { return String(host[..<colon]) }
        return host
    }

    /// `name` as a numeric address: itself, or the first the resolver gives.
    static func address(of name: String) -> String? {
        if Self.isNumericAddress(name) { return name }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &found) == 0, let first = found else { return nil }
        defer { freeaddrinfo(found) }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        switch first.pointee.ai_family {
        case AF_INET:
            var address = first.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }
            guard inet_ntop(AF_INET, &address.sin_addr, &buffer, socklen_t(buffer.count)) != nil else { return nil }
        case AF_INET6:
            var address = first.pointee.ai_addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee }
            guard inet_ntop(AF_INET6, &address.sin6_addr, &buffer, socklen_t(buffer.count)) != nil else { return nil }
        default:
            return nil
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func run() {
        defer {
            // Whatever is still asked is answered from the last caches, here; later asks on the caller's thread.
            let left = self.lock.withLock {
                self.ended = true
                defer { self.requests = [] }
                return self.requests
            }
            for request in left { request() }
        }
        self.needsRefill = true
        self.report()
        var fds = [
            pollfd(fd: nl_cache_mngr_get_fd(self.manager), events: Int16(POLLIN), revents: 0),
            pollfd(fd: self.wakeup.readEnd, events: Int16(POLLIN), revents: 0),
        ]
        var failures = 0
        while true {
            // Asleep until an event; only while a read of the caches failed, woken again in 100 ms to retry it.
            let ready = poll(&fds, 2, self.needsRefill ? 100 : -1)
            if ready < 0 {
                if errno == EINTR { continue }
                self.failed(NetlinkError(call: "poll", reason: String(cString: strerror(errno))))
                return
            }
            if fds[1].revents != 0 {
                self.wakeup.drain()
                let (work, stopping) = self.lock.withLock {
                    defer { self.requests = [] }
                    return (self.requests, self.stopping)
                }
                for request in work { request() }
                if stopping { return }
            }
            if fds[0].revents != 0 {
                let code = nl_cache_mngr_data_ready(self.manager)
                if code < 0 {
                    // Messages were lost (the socket's buffer overflowed in a storm, ENOBUFS): the caches are read
                    // whole again. A socket that keeps failing ends the monitor, and says so.
                    self.needsRefill = true
                    failures += 1
                    if failures >= 20 {
                        self.failed(NetlinkError(call: "reading events", reason: String(cString: nl_geterror(code))))
                        return
                    }
                } else {
                    failures = 0
                    self.messagesRead.add(UInt64(code), ordering: .relaxed)
                }
            }
            if fds[0].revents != 0 || ready == 0 { self.report(refilling: self.needsRefill) }
        }
    }

    /// The monitor cannot go on: it reports no uplink (every transfer that needs the network waits: what cannot be
    /// told is not spent) and tells `stopped` why.
    private func failed(_ error: NetlinkError) {
        self.lock.withLock { self.hasFailed = true }
        self.last = NetworkSnapshot(uplinks: [])
        self.changed(NetworkSnapshot(uplinks: []))
        self.stopped(error)
    }

    /// Tells `changed` of the uplinks when they differ from the last ones told.
    private func report(refilling: Bool = true) {
        // Without a true picture of the kernel's state, nothing is said: the last uplinks told stay in force, and
        // the read is tried again (``needsRefill`` stays set until a read succeeds).
        if refilling {
            guard self.refill() else { return }
            self.needsRefill = false
        }
        let now = self.snapshot()
        self.promptUnknownGateways(of: now)
        guard now != self.last else { return }
        self.last = now
        self.changed(now)
    }

    /// Asks the kernel to resolve each Ethernet uplink's gateway whose MAC it does not know (an idle machine may never
    /// have spoken to it, or its entry aged out): until then a `gateway-mac` rule can only fail closed. Once per
    /// gateway until its MAC is known, so a gateway that never answers is not asked again and again.
    private func promptUnknownGateways(of snapshot: NetworkSnapshot) {
        var prompted: [Int32: String] = [:]
        for uplink in snapshot.uplinks where uplink.facts.gatewayMAC == nil {
            guard let gateway = uplink.facts.gateway, uplink.facts.linkType == UplinkClassifier.ethernetLinkType
            else { continue }
            if self.promptedGateways[uplink.index] != gateway {
                Self.promptNeighbour(gateway, on: uplink.facts.name, index: uplink.index)
            }
            prompted[uplink.index] = gateway
        }
        self.promptedGateways = prompted
    }

    /// Reads the three caches again from the kernel. The events say *that* something changed, but the caches they
    /// keep are not the truth on their own: the kernel sends no event for the IPv4 routes it drops with a link that
    /// goes down, and a veth pair made after the caches were filled left two objects of one link in the link cache
    /// (the new state beside the old). A dump per burst of events costs little next to what a wrong uplink costs.
    /// Returns whether every dump succeeded.
    private func refill() -> Bool {
        for cache in [self.links, self.addresses, self.routes] where nl_cache_refill(self.dumps, cache) < 0 {
            return false
        }
        return true
    }

    /// The uplinks as the caches hold them now. On the monitor's thread once it runs (libnl takes no locks).
    public func snapshot() -> NetworkSnapshot {
        // Default routes of the main table: the interfaces they leave by, per family, and their gateways.
        var defaults: [Int32: (families: Set<AddressFamily>, gateway: String?, gatewayMAC: String?)] = [:]
        Self.forEach(self.routes) { route in
            guard rtnl_route_get_table(route) == RT_TABLE_MAIN.rawValue, rtnl_route_get_type(route) == RTN_UNICAST,
                let destination = rtnl_route_get_dst(route), nl_addr_get_prefixlen(destination) == 0,
                let family = Self.family(Int32(rtnl_route_get_family(route)))
            else { return }
            for index in 0..<rtnl_route_get_nnexthops(route) {
                guard let hop = rtnl_route_nexthop_n(route, index) else { continue }
                let interface = Int32(rtnl_route_nh_get_ifindex(hop))
                var entry = defaults[interface] ?? ([], nil, nil)
                entry.families.insert(family)
                if entry.gateway == nil, let gateway = rtnl_route_nh_get_gateway(hop) {
                    entry.gateway = Self.text(of: gateway)
                    if let neighbour = rtnl_neigh_get(self.neighbours, interface, gateway) {
                        entry.gatewayMAC = rtnl_neigh_get_lladdr(neighbour).map(Self.text(of:))
                        rtnl_neigh_put(neighbour)
                    }
                }
                defaults[interface] = entry
            }
        }
        // Addresses that reach beyond the link (scope universe), per interface and family.
        var addressed: [Int32: Set<AddressFamily>] = [:]
        Self.forEach(self.addresses) { address in
            guard rtnl_addr_get_scope(address) == Int32(RT_SCOPE_UNIVERSE.rawValue),
                let family = Self.family(rtnl_addr_get_family(address))
            else { return }
            addressed[rtnl_addr_get_ifindex(address), default: []].insert(family)
        }
        var uplinks: [Uplink] = []
        var seen = Set<Int32>()
        Self.forEach(self.links) { link in
            let index = rtnl_link_get_ifindex(link)
            // The cache can hold a link more than once (per family, or briefly an old object beside its new one).
            guard let route = defaults[index], seen.insert(index).inserted else { return }
            let families = route.families.intersection(addressed[index] ?? [])
            let flags = rtnl_link_get_flags(link)
            let operational = rtnl_link_get_operstate(link)
            // Up, and with a carrier (IF_OPER_UP; IF_OPER_UNKNOWN for links that do not report it, like tun).
            guard !families.isEmpty, flags & UInt32(IFF_UP.rawValue) != 0,
                operational == UInt8(IF_OPER_UP) || operational == UInt8(IF_OPER_UNKNOWN)
            else { return }
            guard let namePointer = rtnl_link_get_name(link) else { return }
            let name = String(cString: namePointer)
            var facts = SysfsFacts.read(interface: name)
            facts.linkType = UInt16(truncatingIfNeeded: rtnl_link_get_arptype(link))
            facts.linkKind = rtnl_link_get_type(link).map { String(cString: $0) }
            facts.gateway = route.gateway
            facts.gatewayMAC = route.gatewayMAC
            let verdict = UplinkClassifier.classify(
                facts,
                rules: self.rules,
                override: self.overrides[name],
                desktop: self.desktop[name]
            )
            uplinks.append(Uplink(index: index, facts: facts, families: families, verdict: verdict))
        }
        return NetworkSnapshot(uplinks: uplinks.sorted { $0.facts.name < $1.facts.name })
    }

    /// The interface traffic to `address` (a numeric IPv4 or IPv6 address) leaves by as the kernel routes it now,
    /// policy routing included, with its verdict; nil when there is no route to it. The kernel is asked by
    /// connecting a UDP socket, which sends nothing; its source address names the interface. Reads the caches: on
    /// the monitor's thread once it runs.
    public func egress(to address: String) -> Uplink? {
        guard let source = Self.sourceAddress(to: address) else { return nil }
        var index: Int32?
        Self.forEach(self.addresses) { entry in
            guard index == nil, let local = rtnl_addr_get_local(entry),
                Int(nl_addr_get_len(local)) == source.count,
                let bytes = nl_addr_get_binary_addr(local),
                source.elementsEqual(UnsafeRawBufferPointer(start: bytes, count: source.count))
            else { return }
            index = rtnl_addr_get_ifindex(entry)
        }
        guard let index, let link = rtnl_link_get(self.links, index) else { return nil }
        defer { rtnl_link_put(link) }
        guard let namePointer = rtnl_link_get_name(link) else { return nil }
        let name = String(cString: namePointer)
        if let uplink = self.last?.uplinks.first(where: { $0.index == index }) { return uplink }
        var facts = SysfsFacts.read(interface: name)
        facts.linkType = UInt16(truncatingIfNeeded: rtnl_link_get_arptype(link))
        facts.linkKind = rtnl_link_get_type(link).map { String(cString: $0) }
        let family: AddressFamily = source.count == 4 ? .ipv4 : .ipv6
        let verdict = UplinkClassifier.classify(
            facts,
            rules: self.rules,
            override: self.overrides[name],
            desktop: self.desktop[name]
        )
        return Uplink(index: index, facts: facts, families: [family], verdict: verdict)
    }

    /// Whether `text` is a numeric IPv4 or IPv6 address.
    public static func isNumericAddress(_ text: String) -> Bool {
        var buffer = in6_addr()
        return inet_pton(AF_INET, text, &buffer) == 1 || inet_pton(AF_INET6, text, &buffer) == 1
    }

    /// The source address the kernel picks for `address` (its raw bytes), or nil without a route; bound to
    /// `interface` (SO_BINDTODEVICE), only by the routes through it.
    static func sourceAddress(to address: String, boundTo interface: String? = nil) -> [UInt8]? {
        guard let (descriptor, isV4) = Self.connectedDatagramSocket(to: address, boundTo: interface) else { return nil }
        defer { close(descriptor) }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) == 0 }
        }
        guard named else { return nil }
        return withUnsafeBytes(of: &storage) { raw in
            isV4
                ? Array(raw[4..<8])  // sin_addr
                : Array(raw[8..<24])  // sin6_addr
        }
    }

    /// Makes the kernel resolve `gateway`'s link-layer address on `interface` (ARP, or IPv6 neighbour discovery)
    /// by sending it one empty UDP datagram to the discard port: the neighbour table's event then brings the MAC
    /// that `gateway-mac` rules match. Returns whether it was sent.
    @discardableResult
    static func promptNeighbour(_ gateway: String, on interface: String, index: Int32) -> Bool {
        guard let (descriptor, _) = Self.connectedDatagramSocket(to: gateway, boundTo: interface, scope: index) else {
            return false
        }
        defer { close(descriptor) }
        return send(descriptor, nil, 0, Int32(MSG_DONTWAIT)) == 0
    }

    /// A UDP socket connected to `address`'s discard port (connecting sends nothing), bound to `interface` when
    /// given; `scope`, the interface index for an IPv6 link-local address. Nil without a route.
    private static func connectedDatagramSocket(
        to address: String,
        boundTo interface: String?,
        scope: Int32 = 0
    ) -> (descriptor: Int32, isV4: Bool)? {
        var v4 = sockaddr_in()
        var v6 = sockaddr_in6()
        let isV4 = inet_pton(AF_INET, address, &v4.sin_addr) == 1
        guard isV4 || inet_pton(AF_INET6, address, &v6.sin6_addr) == 1 else { return nil }
        let descriptor = socket(isV4 ? AF_INET : AF_INET6, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        if let interface {
            let bound = interface.withCString { name in
                setsockopt(descriptor, SOL_SOCKET, SO_BINDTODEVICE, name, socklen_t(strlen(name) + 1)) == 0
            }
            guard bound else {
                close(descriptor)
                return nil
            }
        }
        let connected: Bool
        if isV4 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = UInt16(9).bigEndian
            connected = withUnsafePointer(to: &v4) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
        } else {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = UInt16(9).bigEndian
            v6.sin6_scope_id = UInt32(bitPattern: scope)
            connected = withUnsafePointer(to: &v6) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) == 0
                }
            }
        }
        guard connected else {
            close(descriptor)
            return nil
        }
        return (descriptor, isV4)
    }

    private static func forEach(_ cache: OpaquePointer?, _ body: (OpaquePointer) -> Void) {
        var object = nl_cache_get_first(cache)
        while let current = object {
            body(current)
            object = nl_cache_get_next(current)
        }
    }

    private static func family(_ value: Int32) -> AddressFamily? {
        switch value {
        case AF_INET: .ipv4
        case AF_INET6: .ipv6
        default: nil
        }
    }

    private static func text(of address: OpaquePointer) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        let text = buffer.withUnsafeMutableBufferPointer { nl_addr2str(address, $0.baseAddress, 64) }
        return text.map { String(cString: $0) } ?? ""
    }
}

/// An interface's facts from sysfs (`/sys/class/net/NAME`): its uevent's DEVTYPE, its device's driver, whether it
/// is wireless. What netlink says (link type, kind, gateway) is filled in by the monitor.
public enum SysfsFacts {
    /// Reads them; a missing file leaves its fact out.
    public static func read(interface name: String, root: String = "/sys/class/net") -> InterfaceFacts {
        let directory = root + "/" + name
        var facts = InterfaceFacts(name: name)
        if let uevent = try? String(contentsOfFile: directory + "/uevent", encoding: .utf8) {
            for line in uevent.split(separator: "\n") where line.hasPrefix("DEVTYPE=") {
                facts.deviceType = String(line.dropFirst("DEVTYPE=".count))
            }
        }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
        let count = readlink(directory + "/device/driver", &buffer, buffer.count - 1)
        if count > 0 {
            let target = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            facts.driver = target.split(separator: "/").last.map(String.init)
        }
        facts.isWireless = access(directory + "/wireless", F_OK) == 0 || access(directory + "/phy80211", F_OK) == 0
        return facts
    }
}

extension NetworkSnapshot {
    /// The snapshot as `barge net` reports it.
    public var report: NetworkReport { NetworkReport(uplinks: self.uplinks.map(\.report)) }
}

extension Uplink {
    /// The uplink as `barge net` reports it.
    public var report: NetworkReport.UplinkReport {
        NetworkReport.UplinkReport(
            name: self.facts.name,
            kind: self.verdict.kind.rawValue,
            cost: self.verdict.cost.rawValue,
            costSource: self.verdict.costSource.description,
            roaming: self.verdict.roaming,
            roamingSource: self.verdict.roamingSource.description,
            families: self.families.sorted().map(\.rawValue),
            gateway: self.facts.gateway,
            gatewayMAC: self.facts.gatewayMAC
        )
    }
}

/// An interface's byte counters, read fresh from sysfs (`statistics/rx_bytes`, `tx_bytes`).
public struct InterfaceCounters: Hashable, Sendable {
    /// Bytes received.
    public var received: UInt64
    /// Bytes sent.
    public var sent: UInt64

    /// Reads them; nil when the interface is gone.
    public static func read(interface name: String, root: String = "/sys/class/net") -> InterfaceCounters? {
        func counter(_ file: String) -> UInt64? {
            (try? String(contentsOfFile: "\(root)/\(name)/statistics/\(file)", encoding: .utf8))
                .flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        guard let received = counter("rx_bytes"), let sent = counter("tx_bytes") else { return nil }
        return InterfaceCounters(received: received, sent: sent)
    }
}

extension NetworkReport {
    /// The report with each uplink's receive and send rates, from its counters read twice `span` apart.
    public func measuringRates(over span: Duration = .milliseconds(500)) async -> NetworkReport {
        let names = self.uplinks.map(\.name)
        let clock = ContinuousClock()
        let began = clock.now
        let before = names.map { InterfaceCounters.read(interface: $0) }
        try? await Task.sleep(for: span)
        let elapsed = clock.now - began
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        var report = self
        for (index, name) in names.enumerated() {
            guard let first = before[index], let second = InterfaceCounters.read(interface: name), seconds > 0 else {
                continue
            }
            // A counter that went back (the interface was made again) gives no rate rather than a wrong one.
            guard second.received >= first.received, second.sent >= first.sent else { continue }
            report.uplinks[index].receiveRate = UInt64(Double(second.received - first.received) / seconds)
            report.uplinks[index].sendRate = UInt64(Double(second.sent - first.sent) / seconds)
        }
        return report
    }
}
