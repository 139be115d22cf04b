// Package sim is a simulated meeting platform that runs inside the meetsync
// binary: the embedded default Provider (meetsync.ProviderSim), so that the
// server, the tests and `meetsync demo` work with no outside service.
//
// A Platform holds, per meetsync app, what NetEase Meeting would hold:
// accounts (userUuid, name, token, banned), meetings (number, subject,
// host, password, state, members) and pending invitations. Platform.Open
// keeps that state in a JSON file, rewritten atomically on every change, so
// a restarted server still knows the accounts it created; New keeps it in
// memory.
//
// Three faces:
//
//   - Platform.Provider(appID) is the meetsync.Provider of one app: the
//     server-side API (EnsureAccount, RevokeToken, CreateMeeting, …) and
//     VerifyCallback.
//   - Platform.SetCallbackSink receives the platform's callbacks, signed
//     exactly like NetEase Meeting's (appkey, CurTime, MD5, CheckSum), in
//     order per app, retried with backoff when the sink fails. The server
//     wires it to its own callback handler, in process.
//   - Platform.NewSDK is a simulated NEMeeting client SDK for one device:
//     Init, Login, JoinMeeting, LeaveMeeting, Logout, and a listener that
//     hears onMeetingStatusChanged, onKickOut and onAuthInfoExpired the way
//     the real SDK reports them.
//
// Faults are injected at run time: SetLatency, SetErrorRate and SetOutage on
// the Platform, DropConnection and Restore on an SDK. See docs/sim.md.
package sim
