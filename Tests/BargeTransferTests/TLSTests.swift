import BargeCore
import BargeTestSupport
import BargeTransfer
import Foundation
import Testing

/// TLS is verified by default; a CA file makes a private certificate trusted; https never silently becomes http.
@Suite("Engine over TLS", .serialized, .enabled(if: NginxServer.isAvailable, "nginx is not installed"))
struct TLSTests {
    let nginx: NginxServer
    let scratch: ScratchDirectory

    init() throws {
        self.nginx = try NginxServer(
            tls: true,
            extraLocations: "location = /downgrade { return 302 http://127.0.0.1:{http_port}/plain.bin; }"
        )
        self.scratch = try ScratchDirectory()
        try self.nginx.serve("plain.bin", bytes: TestContent.bytes(count: 10_000, seed: 50))
    }

    @Test func anUntrustedCertificateIsAPermanentFailure() async throws {
        let url = try #require(self.nginx.tlsBaseURL) + "/plain.bin"
        let (outcome, _) = await fetch(TransferRequest(sources: [url], destination: self.scratch.path + "/a.bin"))
        let failure = try #require(outcome.failure)
        #expect(failure.kind == .permanent)
        #expect(failure.reason.hasPrefix("TLS verification of localhost:\(self.nginx.tlsPort!) failed"), "\(failure)")
        #expect(listing(self.scratch.path).isEmpty)
    }

    @Test func aCAFileMakesItTrusted() async throws {
        let url = try #require(self.nginx.tlsBaseURL) + "/plain.bin"
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/b.bin")
        request.tls.caFile = self.nginx.certificateFile
        let (outcome, _) = await fetch(request)
        #expect(outcome.completed?.size == 10_000, "\(outcome)")
    }

    @Test func aRedirectFromHTTPSToHTTPIsRefusedUnlessAllowed() async throws {
        let url = try #require(self.nginx.tlsBaseURL) + "/downgrade"
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/c.bin")
        request.tls.caFile = self.nginx.certificateFile
        let (outcome, _) = await fetch(request)
        let failure = try #require(outcome.failure)
        #expect(failure.kind == .permanent)
        #expect(failure.reason.hasPrefix("refused a redirect from https to http"), "\(failure)")
        request.allowInsecureRedirect = true
        let allowed = await fetch(request)
        #expect(allowed.outcome.completed?.url.hasPrefix("http://127.0.0.1") == true, "\(allowed.outcome)")
    }

    @Test func httpsUsesHTTP2WhereTheServerOffersIt() async throws {
        let url = try #require(self.nginx.tlsBaseURL) + "/plain.bin"
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/h2.bin")
        request.tls.caFile = self.nginx.certificateFile
        let (outcome, events) = await fetch(request)
        #expect(outcome.completed != nil, "\(outcome)")
        let versions = events.compactMap { if case .response(let response) = $0 { response.httpVersion } else { nil } }
        #expect(versions == ["HTTP/2"])
    }

    @Test func aClientCertificateIsPresented() async throws {
        try self.nginx.serve("client-only/secret.bin", bytes: TestContent.bytes(count: 2000, seed: 51))
        let url = try #require(self.nginx.tlsBaseURL) + "/client-only/secret.bin"
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/secret.bin")
        request.tls.caFile = self.nginx.certificateFile
        let refused = await fetch(request)
        #expect(refused.outcome.failure?.reason.contains("HTTP 403") == true, "\(refused.outcome)")
        let client = try #require(self.nginx.clientCertificate)
        request.tls.clientCertificate = client.certificate
        request.tls.clientKey = client.key
        let (outcome, _) = await fetch(request)
        #expect(outcome.completed?.size == 2000, "\(outcome)")
    }
}
