import PropertyBased
import Testing

@testable import BargeCore

/// Printable ASCII and a few multi-byte characters: the garbage a user can type.
let garbage = Gen.character(in: " "..."~").string(of: 0...24)
let unicodeGarbage = Gen.unicodeScalar(in: "\u{0}"..."\u{2FFF}").map { Character($0) }.string(of: 0...12)

@Suite("ByteCount")
struct ByteCountTests {
    @Test(
        arguments: [
            ("1048576", 1_048_576), ("0", 0), ("500MB", 500_000_000), ("4GiB", 4 << 30), ("4 GiB", 4 << 30),
            ("1.5KiB", 1536), ("97.8MiB", 102_550_732), ("2tb", 2_000_000_000_000), ("7B", 7), ("1kib", 1024),
        ] as [(String, UInt64)]
    )
    func parsesExamples(text: String, bytes: UInt64) throws {
        #expect(try ByteCount(parsing: text).bytes == bytes)
    }

    @Test(arguments: ["", "GiB", "4 parsecs", "-1", "1.5", "1..5KiB", "4GiBs", "18446744073709551616", "99999999TiB"])
    func rejects(text: String) {
        #expect(throws: UnitError.self) { try ByteCount(parsing: text) }
    }

    @Test func formatThenParseRoundTrips() async {
        await propertyCheck(count: 500, input: Gen.uint64(in: 0...(1 << 50))) { bytes in
            let text = ByteCount(bytes).description
            #expect((try? ByteCount(parsing: text))?.bytes == bytes, "\(text)")
        }
    }

    @Test func roundTripsOnUnitMultiples() async {
        let units: [UInt64] = [1 << 10, 1 << 20, 1 << 30, 1 << 40, 1_000, 1_000_000, 1_000_000_000]
        await propertyCheck(input: Gen.uint64(in: 1...4096), Gen.element(of: units)) { count, unit in
            let bytes = count * unit!
            let text = ByteCount(bytes).description
            #expect(!text.hasSuffix("B") || !text.dropLast().allSatisfy(\.isNumber), "\(text) uses a unit")
            #expect((try? ByteCount(parsing: text))?.bytes == bytes)
        }
    }

    @Test func garbageNeverCrashes() async {
        await propertyCheck(count: 1000, input: garbage) { text in
            if let count = try? ByteCount(parsing: text) {
                #expect((try? ByteCount(parsing: count.description)) == count)
            }
        }
    }

    @Test func humanReadable() {
        #expect(ByteCount(512).humanReadable == "512 B")
        #expect(ByteCount(2 << 30).humanReadable == "2 GiB")
        #expect(ByteCount(102_550_732).humanReadable == "97.8 MiB")
    }
}

@Suite("ByteRate and RateLimit")
struct ByteRateTests {
    @Test(
        arguments: [
            ("5MiB/s", 5 << 20), ("800KB/s", 800_000), ("20Mbit/s", 2_500_000), ("1Gbit/s", 125_000_000),
            ("64kbit/s", 8_000), ("100 B/s", 100), ("1.5MiB/s", 1_572_864),
        ] as [(String, UInt64)]
    )
    func parsesExamples(text: String, bytesPerSecond: UInt64) throws {
        #expect(try ByteRate(parsing: text).bytesPerSecond == bytesPerSecond)
    }

    @Test(arguments: ["5MiB", "off", "0B/s", "1bit/s", "fast/s", "/s", "5 MiB per second", "5Mibit/s"])
    func rejects(text: String) {
        #expect(throws: UnitError.self) { try ByteRate(parsing: text) }
    }

    @Test func offIsALimitButNotARate() throws {
        #expect(try RateLimit(parsing: "off") == .off)
        #expect(try RateLimit(parsing: "OFF") == .off)
        #expect(try RateLimit(parsing: "2MiB/s") == .limited(ByteRate(bytesPerSecond: 2 << 20)))
        #expect(throws: UnitError.self) { try RateLimit(parsing: "on") }
    }

    @Test func formatThenParseRoundTrips() async {
        await propertyCheck(count: 500, input: Gen.uint64(in: 1...(1 << 45))) { value in
            let rate = ByteRate(bytesPerSecond: value)
            #expect((try? ByteRate(parsing: rate.description)) == rate, "\(rate)")
            #expect((try? RateLimit(parsing: rate.description)) == .limited(rate))
        }
    }

    @Test func garbageNeverCrashes() async {
        await propertyCheck(count: 1000, input: garbage) { text in
            if let limit = try? RateLimit(parsing: text + "/s") {
                #expect((try? RateLimit(parsing: limit.description)) == limit)
            }
            _ = try? RateLimit(parsing: text)
        }
    }
}

@Suite("TimeSpan")
struct TimeSpanTests {
    @Test(
        arguments: [
            ("30s", 30), ("6h", 21_600), ("1h30m", 5_400), ("14d", 1_209_600), ("2w", 1_209_600), ("0s", 0),
            ("1d2h3m4s", 93_784), (" 5m ", 300),
        ] as [(String, Int64)]
    )
    func parsesExamples(text: String, seconds: Int64) throws {
        #expect(try TimeSpan(parsing: text).seconds == seconds)
    }

    @Test(arguments: ["", "30", "h", "1x", "30m1h", "1h1h", "-5s", "1.5h", "99999999999999999999s", "1 h"])
    func rejects(text: String) {
        #expect(throws: UnitError.self) { try TimeSpan(parsing: text) }
    }

    @Test func noUnitSaysWhichUnitsExist() {
        #expect(throws: UnitError("'10' has no unit; write e.g. 10s, 10m or 10h")) { try TimeSpan(parsing: "10") }
    }

    @Test func formatThenParseRoundTrips() async {
        await propertyCheck(count: 500, input: Gen.int64(in: 0...(400 * 86_400))) { seconds in
            let span = TimeSpan(seconds: seconds)
            #expect((try? TimeSpan(parsing: span.description)) == span, "\(span)")
        }
    }

    @Test func garbageNeverCrashes() async {
        await propertyCheck(count: 1000, input: garbage) { text in
            if let span = try? TimeSpan(parsing: text) {
                #expect((try? TimeSpan(parsing: span.description)) == span)
            }
        }
    }
}

@Suite("TimeWindow and weekdays")
struct TimeWindowTests {
    @Test func parsesAWindowThatCrossesMidnight() throws {
        let window = try TimeWindow(parsing: "22:00-06:00")
        #expect(window.start == 22 * 60)
        #expect(window.end == 6 * 60)
        #expect(window.crossesMidnight)
        #expect(window.days == .everyDay)
        #expect(window.description == "22:00-06:00")
    }

    @Test func parsesWeekdays() throws {
        let window = try TimeWindow(parsing: "mon-fri 9:30-17:00")
        #expect(window.days.days == [.monday, .tuesday, .wednesday, .thursday, .friday])
        #expect(window.description == "mon-fri 09:30-17:00")
        #expect(try WeekdaySet(parsing: "fri-mon").days == [.friday, .saturday, .sunday, .monday])
        #expect(try WeekdaySet(parsing: "Saturday,sun").description == "sat,sun")
    }

    @Test func allDayAndMidnight() throws {
        #expect(try TimeWindow(parsing: "00:00-24:00").end == 1440)
        #expect(try TimeWindow(parsing: "22:00-00:00").end == 1440)
    }

    @Test(arguments: [
        "25:00-06:00", "22:00", "22:00-22:00", "24:00-06:00", "22:60-06:00", "mon-fry 22:00-06:00", "a b c",
        "22-06", "2200-0600", "mon- 22:00-06:00", "00:00-00:00", "", "22:00-06:00-07:00",
    ])
    func rejects(text: String) {
        #expect(throws: UnitError.self) { try TimeWindow(parsing: text) }
    }

    @Test func misspeltDaySuggestsTheDay() {
        #expect(
            throws: UnitError(
                "'fry' is not a weekday; expected one of mon, tue, wed, thu, fri, sat, sun; did you mean 'fri'?"
            )
        ) {
            try WeekdaySet(parsing: "fry")
        }
    }

    @Test func formatThenParseRoundTrips() async {
        let days = Gen.element(of: Weekday.allCases).compactMap { $0 }.set(ofAtMost: 1...7)
        await propertyCheck(
            count: 500,
            input: Gen.int(in: 0...1439),
            Gen.int(in: 1...1439),
            days
        ) { start, length, days in
            let end = (start + length) % 1440 == 0 ? 1440 : (start + length) % 1440
            let window = TimeWindow(start: start, end: end, days: WeekdaySet(days: days))
            #expect((try? TimeWindow(parsing: window.description)) == window, "\(window)")
        }
    }

    @Test func garbageNeverCrashes() async {
        await propertyCheck(count: 1000, input: garbage) { text in
            if let window = try? TimeWindow(parsing: text) {
                #expect((try? TimeWindow(parsing: window.description)) == window)
            }
        }
        await propertyCheck(count: 300, input: unicodeGarbage) { text in
            _ = try? TimeWindow(parsing: text)
            _ = try? ByteCount(parsing: text)
            _ = try? TimeSpan(parsing: text)
            _ = try? RateLimit(parsing: text)
        }
    }
}
