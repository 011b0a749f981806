import BargeCore

/// Which jobs a control command names, and whether its caller may control them: the supervisor's command step,
/// pure (tested without a socket, a store or an engine).
enum JobSelection {
    /// The jobs `selection` names that `caller` may control, or the refusal: no such job, another user's job, or a
    /// whole manifest for a caller who does not administer the agent.
    static func select(
        _ selection: Supervisor.Selection,
        by caller: ControlCaller,
        in table: JobTable
    ) -> (ids: [Int64], refusal: CommandReply?) {
        let ids: [Int64]
        switch selection {
        case .jobs(let named):
            ids = named.filter { table.position(of: $0) != nil }
        case .manifest(let name):
            guard caller.isAdministrator else {
                return ([], .refused(.forbidden, "only an administrator of the agent may control a manifest's jobs"))
            }
            ids = table.views.filter { $0.spec.manifest == name }.map(\.record.id)
        }
        guard !ids.isEmpty else { return ([], .refused(.noSuchJob, "no such job")) }
        let others = ids.filter { id in table[id].map { !caller.mayControl($0) } ?? true }
        guard others.isEmpty else {
            let list = others.map(String.init).joined(separator: ", ")
            return ([], .refused(.forbidden, "job \(list) belongs to another user", jobs: others))
        }
        return (ids, nil)
    }
}
