public import BargeCore
internal import CSystemd
import Foundation
import Glibc

/// A D-Bus call or connection that failed.
public struct DesktopBusError: Error, CustomStringConvertible {
    /// What was being done.
    public var call: String
    /// The D-Bus error's name (`org.freedesktop.DBus.Error.ServiceUnknown` …), when the bus gave one.
    public var name: String?
    /// The reason.
    public var reason: String
    public var description: String { "D-Bus: \(self.call): \(self.reason)" }

    /// Whether the error says that the service is not on the bus: nothing to know, not a failure to know it.
    var serviceIsAbsent: Bool {
        self.name == "org.freedesktop.DBus.Error.ServiceUnknown"
            || self.name == "org.freedesktop.DBus.Error.NameHasNoOwner"
    }
}

/// Watches what NetworkManager and ModemManager say about the network, on the system bus (sd-bus), on a thread of
/// its own: each device's `Metered` and each modem's 3GPP registration, by interface name. It sleeps in `poll(2)`
/// until a signal that can change them arrives (a device's or modem's properties, a device or modem added or
/// removed, either service starting or stopping), then reads both services again. No timer.
///
/// Without a system bus there is nothing to watch: ``init(failed:)`` throws and the agent goes on without
/// (the rules and the heuristics decide). `DBUS_SYSTEM_BUS_ADDRESS` names another bus (the tests' own).
public final class DesktopNetworkWatcher: @unchecked Sendable {
    /// The bus connection (`sd_bus *`); used on the watcher's thread once it runs.
    private var bus: OpaquePointer?
    /// A pipe whose write end stops the thread.
    private let wakeup: WakeupPipe
    private var changed: @Sendable ([String: DesktopNetworkFacts]) -> Void = { _ in }
    private let failed: @Sendable (DesktopBusError) -> Void
    /// Set by a signal that may change the facts, and while a read keeps failing; on the watcher's thread.
    fileprivate var stale = false
    /// The facts last told.
    private var last: [String: DesktopNetworkFacts] = [:]
    /// What each service said last: a service that leaves the bus (stopped, restarting) leaves its links as they
    /// were, so its verdicts stay in force until it says otherwise.
    private var lastDevices: [DesktopNetworkFacts.ManagedDevice] = []
    private var lastModems: [DesktopNetworkFacts.Modem] = []
    /// How long to wait before reading again after a failed read (doubling, at most a minute); nil while reads
    /// succeed.
    private var retryMilliseconds: Int32?
    private let thread = LoopThread(name: "barge-dbus")

    static let networkManager = "org.freedesktop.NetworkManager"
    static let modemManager = "org.freedesktop.ModemManager1"
    /// How long one call may take: a service that hangs costs the watcher's thread this much, never the agent.
    static let callTimeoutMicroseconds: UInt64 = 5_000_000

    /// Connects to the system bus, subscribes to the signals and reads the facts once (``facts``); throws only when
    /// there is no bus to watch. `failed` is told of a read that fails (here, or later on the watcher's thread): the
    /// last facts stay in force, a failed read being no reason to think a metered link free, and the read is tried
    /// again after a second, then less and less often up to once a minute, until it succeeds. It is also told when
    /// the bus connection is lost (the thread then ends, the last facts in force).
    public init(failed: @escaping @Sendable (DesktopBusError) -> Void = { _ in }) throws(DesktopBusError) {
        self.failed = failed
        guard let wakeup = WakeupPipe() else {
            throw DesktopBusError(call: "pipe", reason: String(cString: strerror(errno)))
        }
        self.wakeup = wakeup
        // A failure below throws; deinit still runs for this instance (every property is set) and releases the bus.
        try Self.check(sd_bus_open_system(&self.bus), "connecting to the system bus")
        let me = Unmanaged.passUnretained(self).toOpaque()
        for rule in Self.matchRules {
            try Self.check(sd_bus_add_match(self.bus, nil, rule, Self.onSignal, me), "subscribing to \(rule)")
        }
        // The subscriptions are in place before the first read: a change between the two is not lost.
        self.readAgain()
    }

    deinit {
        if let bus { sd_bus_flush_close_unref(bus) }
    }

    /// Reads both services; on success the facts are kept (and told to `changed` when they differ), on failure
    /// `failed` is told and a retry is set.
    private func readAgain() {
        self.stale = false
        do {
            let now = try self.read()
            self.retryMilliseconds = nil
            guard now != self.last else { return }
            self.last = now
            self.changed(now)
        } catch {
            self.stale = true
            self.retryMilliseconds = min((self.retryMilliseconds ?? 500) * 2, 60_000)
            self.failed(error)
        }
    }

    /// The facts as last read.
    public var facts: [String: DesktopNetworkFacts] { self.last }

    /// The signals that may change the facts. Properties changes are narrowed to the interfaces that hold the facts
    /// (a Wi-Fi access point's signal strength changes often and says nothing here), and within them to the
    /// properties (``onSignal``).
    static let matchRules = [
        "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',interface='org.freedesktop.DBus',"
            + "member='NameOwnerChanged',arg0='\(networkManager)'",
        "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',interface='org.freedesktop.DBus',"
            + "member='NameOwnerChanged',arg0='\(modemManager)'",
        "type='signal',sender='\(networkManager)',path='/org/freedesktop/NetworkManager',"
            + "interface='org.freedesktop.NetworkManager',member='DeviceAdded'",
        "type='signal',sender='\(networkManager)',path='/org/freedesktop/NetworkManager',"
            + "interface='org.freedesktop.NetworkManager',member='DeviceRemoved'",
        "type='signal',sender='\(networkManager)',interface='org.freedesktop.DBus.Properties',"
            + "member='PropertiesChanged',arg0='org.freedesktop.NetworkManager.Device'",
        "type='signal',sender='\(modemManager)',path='/org/freedesktop/ModemManager1',"
            + "interface='org.freedesktop.DBus.ObjectManager'",
        "type='signal',sender='\(modemManager)',interface='org.freedesktop.DBus.Properties',"
            + "member='PropertiesChanged',arg0='org.freedesktop.ModemManager1.Modem'",
        "type='signal',sender='\(modemManager)',interface='org.freedesktop.DBus.Properties',"
            + "member='PropertiesChanged',arg0='org.freedesktop.ModemManager1.Modem.Modem3gpp'",
    ]

    /// The properties whose change is read: the rest of a PropertiesChanged signal is ignored.
    static let watchedProperties: Set<String> = ["Metered", "Interface", "IpInterface", "Ports", "RegistrationState"]

    /// Marks the facts stale on a signal that can change them.
    private static let onSignal: sd_bus_message_handler_t = { message, userdata, _ in
        guard let message, let userdata else { return 0 }
        let watcher = Unmanaged<DesktopNetworkWatcher>.fromOpaque(userdata).takeUnretainedValue()
        if sd_bus_message_is_signal(message, "org.freedesktop.DBus.Properties", "PropertiesChanged") > 0 {
            // (s interface, a{sv} changed, as invalidated): stale only when a watched property is named. A signal
            // that cannot be read marks the facts stale (they are read again rather than trusted).
            guard let values = try? BusValue.readAll(message), values.count == 3,
                case .array(let changed) = values[1], case .array(let invalidated) = values[2]
            else {
                watcher.stale = true
                return 0
            }
            var named = Set(BusValue.dictionary(.array(changed)).keys)
            for case .string(let name) in invalidated { named.insert(name) }
            if !named.isDisjoint(with: DesktopNetworkWatcher.watchedProperties) { watcher.stale = true }
            return 0
        }
        watcher.stale = true
        return 0
    }

    /// Starts the watcher's thread; `changed` runs on it with each new set of facts (signals that came since ``init``
    /// included). A started watcher lives until ``stop()``.
    public func start(reporting changed: @escaping @Sendable ([String: DesktopNetworkFacts]) -> Void) {
        self.changed = changed
        self.thread.start(self) { $0.run() }
    }

    /// Stops the thread and waits for it.
    public func stop() {
        self.thread.stop { self.wakeup.wake() }
    }

    private func run() {
        var fds = [
            pollfd(fd: sd_bus_get_fd(self.bus), events: 0, revents: 0),
            pollfd(fd: self.wakeup.readEnd, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            var processed: Int32
            repeat { processed = sd_bus_process(self.bus, nil) } while processed > 0
            if processed < 0 {
                self.failed(DesktopBusError(call: "reading the bus", reason: String(cString: strerror(-processed))))
                return
            }
            if self.stale, self.retryMilliseconds == nil {
                self.readAgain()
                continue  // the calls may have queued signals
            }
            fds[0].events = Int16(truncatingIfNeeded: sd_bus_get_events(self.bus))
            var deadline: UInt64 = .max
            _ = sd_bus_get_timeout(self.bus, &deadline)
            var timeout = Self.milliseconds(until: deadline)
            // After a failed read, asleep at most until the retry.
            if let retry = self.retryMilliseconds { timeout = timeout < 0 ? retry : min(timeout, retry) }
            let ready = poll(&fds, 2, timeout)
            if ready < 0 && errno != EINTR {
                self.failed(DesktopBusError(call: "poll", reason: String(cString: strerror(errno))))
                return
            }
            if fds[1].revents != 0 { return }
            if ready == 0, self.retryMilliseconds != nil {
                self.readAgain()
            }
        }
    }

    /// Milliseconds from now to an absolute CLOCK_MONOTONIC deadline in microseconds (-1 for none).
    private static func milliseconds(until deadline: UInt64) -> Int32 {
        guard deadline != .max else { return -1 }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let current = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        guard deadline > current else { return 0 }
        return Int32(clamping: (deadline - current + 999) / 1000)
    }

    /// Reads both services. A service that is not on the bus (stopped, restarting) contributes what it said last.
    private func read() throws(DesktopBusError) -> [String: DesktopNetworkFacts] {
        let devices = try self.managedDevices() ?? self.lastDevices
        let modems = try self.modems() ?? self.lastModems
        self.lastDevices = devices
        self.lastModems = modems
        return DesktopNetworkFacts.byInterface(devices: devices, modems: modems)
    }

    /// A reply that is not what the interface promises: the facts are not known, rather than none.
    private static func unreadable(_ what: String) -> DesktopBusError {
        DesktopBusError(call: what, reason: "a reply of an unexpected shape")
    }

    /// NetworkManager's devices; nil when it is not on the bus.
    private func managedDevices() throws(DesktopBusError) -> [DesktopNetworkFacts.ManagedDevice]? {
        let paths: [BusValue]
        do throws(DesktopBusError) {
            let reply = try self.call(
                Self.networkManager,
                "/org/freedesktop/NetworkManager",
                "org.freedesktop.NetworkManager",
                "GetDevices"
            )
            guard reply.count == 1, case .array(let listed) = reply[0] else { throw Self.unreadable("GetDevices") }
            paths = listed
        } catch  where error.serviceIsAbsent {
            return nil
        }
        var devices: [DesktopNetworkFacts.ManagedDevice] = []
        for value in paths {
            guard case .string(let path) = value else { throw Self.unreadable("GetDevices") }
            let properties: [String: BusValue]
            do throws(DesktopBusError) {
                let reply = try self.call(
                    Self.networkManager,
                    path,
                    "org.freedesktop.DBus.Properties",
                    "GetAll",
                    "org.freedesktop.NetworkManager.Device"
                )
                guard reply.count == 1, case .array = reply[0] else { throw Self.unreadable("GetAll \(path)") }
                properties = BusValue.dictionary(reply[0])
            } catch  where error.name == "org.freedesktop.DBus.Error.UnknownObject" {
                continue  // removed since the list was read; its DeviceRemoved signal reads again
            }
            guard case .string(let interface)? = properties["Interface"] else { throw Self.unreadable(path) }
            var ipInterface = ""
            if case .string(let name)? = properties["IpInterface"] { ipInterface = name }
            var metered: UInt32 = 0
            if case .number(let number)? = properties["Metered"] { metered = UInt32(truncatingIfNeeded: number) }
            devices.append(.init(interface: interface, ipInterface: ipInterface, metered: metered))
        }
        return devices
    }

    /// ModemManager's modems; nil when it is not on the bus.
    private func modems() throws(DesktopBusError) -> [DesktopNetworkFacts.Modem]? {
        let objects: [BusValue]
        do throws(DesktopBusError) {
            let reply = try self.call(
                Self.modemManager,
                "/org/freedesktop/ModemManager1",
                "org.freedesktop.DBus.ObjectManager",
                "GetManagedObjects"
            )
            guard reply.count == 1, case .array(let listed) = reply[0] else {
                throw Self.unreadable("GetManagedObjects")
            }
            objects = listed
        } catch  where error.serviceIsAbsent {
            return nil
        }
        var modems: [DesktopNetworkFacts.Modem] = []
        for object in objects {
            guard case .entry(_, let interfaces) = object else { throw Self.unreadable("GetManagedObjects") }
            let byInterface = BusValue.dictionary(interfaces)
            let modem = BusValue.dictionary(byInterface["org.freedesktop.ModemManager1.Modem"])
            // An object without the modem interface is not a modem.
            guard !modem.isEmpty else { continue }
            guard case .array(let listed)? = modem["Ports"] else { throw Self.unreadable("a modem's Ports") }
            var ports: [DesktopNetworkFacts.Modem.Port] = []
            for port in listed {
                guard case .structure(let parts) = port, parts.count == 2, case .string(let name) = parts[0],
                    case .number(let type) = parts[1]
                else { throw Self.unreadable("a modem's Ports") }
                ports.append(.init(name, UInt32(truncatingIfNeeded: type)))
            }
            var registration: UInt32?
            let threeGPP = BusValue.dictionary(byInterface["org.freedesktop.ModemManager1.Modem.Modem3gpp"])
            if case .number(let state)? = threeGPP["RegistrationState"] {
                registration = UInt32(truncatingIfNeeded: state)
            }
            modems.append(.init(ports: ports, registration: registration))
        }
        return modems
    }

    /// Calls a method (with string arguments) without starting the service, and returns the reply's values.
    private func call(
        _ destination: String,
        _ path: String,
        _ interface: String,
        _ member: String,
        _ arguments: String...
    ) throws(DesktopBusError) -> [BusValue] {
        var message: OpaquePointer?
        try Self.check(sd_bus_message_new_method_call(self.bus, &message, destination, path, interface, member), member)
        defer { sd_bus_message_unref(message) }
        // A service that does not run is not started for Barge's sake.
        _ = sd_bus_message_set_auto_start(message, 0)
        for argument in arguments {
            let code = argument.withCString { sd_bus_message_append_basic(message, CChar(UInt8(ascii: "s")), $0) }
            try Self.check(code, member)
        }
        var error = sd_bus_error()
        defer { sd_bus_error_free(&error) }
        var reply: OpaquePointer?
        let code = sd_bus_call(self.bus, message, Self.callTimeoutMicroseconds, &error, &reply)
        guard code >= 0 else {
            throw DesktopBusError(
                call: "\(destination) \(member)",
                name: error.name.map { String(cString: $0) },
                reason: error.message.map { String(cString: $0) } ?? String(cString: strerror(-code))
            )
        }
        defer { sd_bus_message_unref(reply) }
        do {
            return try BusValue.readAll(reply)
        } catch {
            throw DesktopBusError(call: "\(destination) \(member)", reason: "unreadable reply: \(error)")
        }
    }

    private static func check(_ code: Int32, _ call: String) throws(DesktopBusError) {
        guard code < 0 else { return }
        throw DesktopBusError(call: call, reason: String(cString: strerror(-code)))
    }
}

/// A D-Bus value read off a message, as far as the watcher needs to tell them apart.
indirect enum BusValue: Equatable {
    case string(String)
    case number(Int64)
    case double(Double)
    case array([BusValue])
    case structure([BusValue])
    case entry(BusValue, BusValue)
    case variant(BusValue)

    /// A message that cannot be read as its signature says.
    struct Unreadable: Error, CustomStringConvertible {
        var description: String
    }

    /// Every value of a message from where it is read now; the message is rewound first.
    static func readAll(_ message: OpaquePointer?) throws(Unreadable) -> [BusValue] {
        guard sd_bus_message_rewind(message, 1) >= 0 else { throw Unreadable(description: "rewind") }
        var values: [BusValue] = []
        while let value = try Self.read(message) { values.append(value) }
        return values
    }

    /// The next value, or nil at the end of the message or container.
    static func read(_ message: OpaquePointer?) throws(Unreadable) -> BusValue? {
        var type: CChar = 0
        var contents: UnsafePointer<CChar>?
        let peeked = sd_bus_message_peek_type(message, &type, &contents)
        guard peeked > 0 else {
            if peeked < 0 { throw Unreadable(description: String(cString: strerror(-peeked))) }
            return nil
        }
        let code = UInt8(bitPattern: type)
        switch code {
        case UInt8(ascii: "a"), UInt8(ascii: "r"), UInt8(ascii: "e"), UInt8(ascii: "v"):
            guard sd_bus_message_enter_container(message, type, contents) >= 0 else {
                throw Unreadable(description: "container \(Character(Unicode.Scalar(code)))")
            }
            var inner: [BusValue] = []
            while let value = try Self.read(message) { inner.append(value) }
            guard sd_bus_message_exit_container(message) >= 0 else { throw Unreadable(description: "exit") }
            switch code {
            case UInt8(ascii: "a"): return .array(inner)
            case UInt8(ascii: "r"): return .structure(inner)
            case UInt8(ascii: "e"):
                guard inner.count == 2 else { throw Unreadable(description: "dictionary entry") }
                return .entry(inner[0], inner[1])
            default:
                guard inner.count == 1 else { throw Unreadable(description: "variant") }
                return .variant(inner[0])
            }
        case UInt8(ascii: "s"), UInt8(ascii: "o"), UInt8(ascii: "g"):
            var text: UnsafePointer<CChar>?
            guard sd_bus_message_read_basic(message, type, &text) > 0, let text else {
                throw Unreadable(description: "string")
            }
            return .string(String(cString: text))
        case UInt8(ascii: "d"):
            var number: Double = 0
            guard sd_bus_message_read_basic(message, type, &number) > 0 else { throw Unreadable(description: "d") }
            return .double(number)
        case UInt8(ascii: "y"), UInt8(ascii: "b"), UInt8(ascii: "n"), UInt8(ascii: "q"), UInt8(ascii: "i"),
            UInt8(ascii: "u"), UInt8(ascii: "x"), UInt8(ascii: "t"), UInt8(ascii: "h"):
            // Every integer fits in 8 bytes; read into a zeroed 8-byte slot, then taken at its own width.
            var slot: UInt64 = 0
            guard sd_bus_message_read_basic(message, type, &slot) > 0 else {
                throw Unreadable(description: "integer")
            }
            switch code {
            case UInt8(ascii: "y"): return .number(Int64(UInt8(truncatingIfNeeded: slot)))
            case UInt8(ascii: "n"): return .number(Int64(Int16(truncatingIfNeeded: slot)))
            case UInt8(ascii: "q"): return .number(Int64(UInt16(truncatingIfNeeded: slot)))
            case UInt8(ascii: "b"), UInt8(ascii: "i"), UInt8(ascii: "h"):
                return .number(Int64(Int32(truncatingIfNeeded: slot)))
            case UInt8(ascii: "u"): return .number(Int64(UInt32(truncatingIfNeeded: slot)))
            default: return .number(Int64(bitPattern: slot))
            }
        default:
            throw Unreadable(description: "type \(Character(Unicode.Scalar(code)))")
        }
    }

    /// An `a{sv}` (or `a{s…}`) as a dictionary, variants unwrapped; empty for anything else.
    static func dictionary(_ value: BusValue?) -> [String: BusValue] {
        guard case .array(let entries)? = value else { return [:] }
        var dictionary: [String: BusValue] = [:]
        for case .entry(.string(let key), let item) in entries {
            if case .variant(let inner) = item { dictionary[key] = inner } else { dictionary[key] = item }
        }
        return dictionary
    }
}
