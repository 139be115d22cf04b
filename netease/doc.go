// Package netease implements meetsync.Provider against NetEase Meeting
// (NEMeeting / NERoom) server API and verifies and translates its callbacks
// (抄送).
//
// Requests: every call is signed with the headers AppKey, Nonce, CurTime and
// CheckSum = lowercase hex SHA1(AppSecret + Nonce + CurTime) and answered
// with the envelope {"code","msg","requestId","data"}; code 200 (or 0) is
// success. Each attempt has a timeout; 5xx answers and connection errors
// (refused, reset, timed out) are retried with exponential backoff, nothing
// else is: a 4xx or a business error code is final. Errors are
// *meetsync.Error values and never carry a secret or a token.
//
// Callbacks: VerifyCallback checks the headers appkey, CurTime, MD5 and
// CheckSum = lowercase hex SHA1(AppSecret + MD5 + CurTime), the MD5 header
// against the body and CurTime against a tolerance, then translates the
// payload's eventType into meetsync events (see docs/netease.md).
//
// Package neteasetest is a local fake of the same API for tests.
package netease
