// Package neteasetest is a local fake of NetEase Meeting's server API and
// callbacks, for tests only. It listens on 127.0.0.1, checks every
// request's signature (AppKey, Nonce, CurTime, CheckSum), keeps accounts,
// tokens, bans, meetings and members in memory, answers with the
// platform's envelope {"code","msg","requestId","data"}, injects faults
// (5xx, hangs, connection resets, business errors, a "down" switch), counts
// requests, and sends signed callbacks like the platform does.
//
// It implements its signatures independently of package netease, so a test
// of the adapter against it checks both sides.
package neteasetest

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Operation names, as counted by Requests.
const (
	OpAddUser          = "add-user"
	OpBatchGetUser     = "batch-get-user"
	OpRefreshUserToken = "refresh-user-token"
	OpBanUser          = "ban-user"
	OpUnbanUser        = "unban-user"
	OpCreateMeeting    = "create"
	OpMeetingInfo      = "info"
	OpCancelMeeting    = "cancel"
	OpCloseMeeting     = "close"
	OpUnknown          = "unknown"
)

// Platform codes the fake answers with.
const (
	CodeOK            = 200
	CodeBadRequest    = 400
	CodeUnauthorized  = 401
	CodeForbidden     = 403
	CodeNotFound      = 404
	CodeExists        = 409
	CodeEndBeforeFrom = 3411
)

// Meeting states (the platform's numbers).
const (
	StateInit     = 1
	StateStarted  = 2
	StateEnded    = 3
	StateCanceled = 4
	StateRecycled = 5
)

// SignatureTolerance is how far a request's CurTime may be from the fake's
// clock.
const SignatureTolerance = 5 * time.Minute

type faultKind int

const (
	faultStatus faultKind = iota + 1
	faultHang
	faultReset
	faultReject
)

type fault struct {
	kind   faultKind
	n      int
	status int    // faultStatus: the HTTP status
	code   int    // faultReject: the envelope code
	msg    string // faultReject
}

type account struct {
	uuid   string
	name   string
	token  string
	banned bool
}

type member struct {
	uuid string
	name string
	role string
}

type meeting struct {
	id        int64
	num       string
	subject   string
	owner     string
	password  string
	state     int
	startTime int64
	endTime   int64
	members   []member
}

// Server is a fake NetEase Meeting server. Create it with NewServer and
// Close it when done. All methods are safe for concurrent use.
type Server struct {
	// URL is the base URL to give the adapter (Config.BaseURL).
	URL string
	// AppKey and AppSecret are the credentials it accepts and signs with.
	AppKey    string
	AppSecret string

	srv     *httptest.Server
	client  *http.Client
	closing chan struct{}
	once    sync.Once

	mu          sync.Mutex
	now         func() time.Time
	accounts    map[string]*account
	byNum       map[string]*meeting
	byID        map[int64]*meeting
	nextID      int64
	faults      []*fault
	down        bool
	counts      map[string]int
	total       int
	nonces      map[string]time.Time
	callbackURL string
}

// NewServer starts a fake server on 127.0.0.1 for one application.
func NewServer(appKey, appSecret string) *Server {
	s := &Server{
		AppKey: appKey, AppSecret: appSecret,
		// Its own transport: an httptest.Server's Close closes the idle
		// connections of http.DefaultTransport, which would break a
		// callback in flight when another test's server closes.
		client:   &http.Client{Timeout: 10 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()},
		closing:  make(chan struct{}),
		now:      time.Now,
		accounts: map[string]*account{},
		byNum:    map[string]*meeting{},
		byID:     map[int64]*meeting{},
		nextID:   1000,
		counts:   map[string]int{},
		nonces:   map[string]time.Time{},
	}
	mux := http.NewServeMux()
	route := func(pattern, op string, h func(*http.Request) (any, int, string)) {
		mux.HandleFunc(pattern, s.wrap(op, h))
	}
	route("POST /scene/meeting/api/v2/add-user", OpAddUser, s.addUser)
	route("GET /scene/meeting/api/v2/batch-get-user", OpBatchGetUser, s.batchGetUser)
	route("POST /scene/meeting/api/v2/refresh-user-token", OpRefreshUserToken, s.refreshUserToken)
	route("POST /scene/meeting/api/v2/ban-user", OpBanUser, func(r *http.Request) (any, int, string) { return s.setBanned(r, true) })
	route("POST /scene/meeting/api/v2/unban-user", OpUnbanUser, func(r *http.Request) (any, int, string) { return s.setBanned(r, false) })
	route("PUT /scene/meeting/api/{appKey}/v1/create/{type}", OpCreateMeeting, s.createMeeting)
	route("GET /scene/meeting/api/{appKey}/v1/info/meetingNum/{meetingNum}", OpMeetingInfo, s.meetingInfo)
	route("DELETE /scene/meeting/api/{appKey}/v1/cancel/{meetingId}", OpCancelMeeting, s.cancelMeeting)
	route("DELETE /scene/meeting/api/{appKey}/v1/close/meetingNum/{meetingNum}/recycle/{recycle}", OpCloseMeeting, s.closeMeeting)
	route("/", OpUnknown, func(*http.Request) (any, int, string) { return nil, CodeNotFound, "Not Found" })

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("neteasetest: listen on 127.0.0.1: %v", err))
	}
	s.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	s.srv.Start()
	s.URL = s.srv.URL
	return s
}

// Close stops the server, releasing hanging requests.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.closing)
		s.srv.CloseClientConnections()
		s.srv.Close()
		s.client.CloseIdleConnections()
	})
}

// SetNow replaces the fake's clock (default time.Now): request CurTime
// checks and callback CurTime headers use it.
func (s *Server) SetNow(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

func (s *Server) clock() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now()
}

// Requests returns how many requests reached the fake for op (one of the
// Op… names), or for all operations when op is "". Requests answered by an
// injected fault or rejected for their signature count too.
func (s *Server) Requests(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if op == "" {
		return s.total
	}
	return s.counts[op]
}

// FailNext makes the next n requests answer the HTTP status (a 5xx, say)
// with an error envelope of the same code, before any other processing.
func (s *Server) FailNext(n, status int) { s.addFault(&fault{kind: faultStatus, n: n, status: status}) }

// HangNext makes the next n requests never answer: they wait until the
// client gives up (or the server closes).
func (s *Server) HangNext(n int) { s.addFault(&fault{kind: faultHang, n: n}) }

// ResetNext makes the next n requests end with a reset connection.
func (s *Server) ResetNext(n int) { s.addFault(&fault{kind: faultReset, n: n}) }

// RejectNext makes the next n requests answer HTTP 200 with an error
// envelope of this business code and message.
func (s *Server) RejectNext(n, code int, msg string) {
	s.addFault(&fault{kind: faultReject, n: n, code: code, msg: msg})
}

// SetDown makes the server unreachable (every connection is reset) until
// SetDown(false).
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

func (s *Server) addFault(f *fault) {
	if f.n <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

// takeFault counts the request and returns the fault it must suffer, if any.
func (s *Server) takeFault(op string) (f fault, down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	s.counts[op]++
	if s.down {
		return fault{}, true
	}
	if len(s.faults) == 0 {
		return fault{}, false
	}
	head := s.faults[0]
	head.n--
	if head.n == 0 {
		s.faults = s.faults[1:]
	}
	return *head, false
}

func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("neteasetest: connection cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close with RST
	}
	_ = conn.Close()
}

// envelope is the platform's answer.
type envelope struct {
	Code      int    `json:"code"`
	Msg       string `json:"msg"`
	RequestID string `json:"requestId"`
	Ts        int64  `json:"ts"`
	Cost      string `json:"cost"`
	Data      any    `json:"data,omitempty"`
}

func (s *Server) write(w http.ResponseWriter, status, code int, msg string, data any) {
	if msg == "" {
		msg = "success"
	}
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(envelope{Code: code, Msg: msg, RequestID: randomHex(16), Ts: s.clock().UnixMilli(), Cost: "1ms", Data: data})
}

// wrap counts the request, applies faults, checks the signature and runs h,
// which returns the data, the code (CodeOK for success) and a message.
func (s *Server) wrap(op string, h func(*http.Request) (any, int, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f, down := s.takeFault(op)
		switch {
		case down:
			reset(w)
			return
		case f.kind == faultReset:
			reset(w)
			return
		case f.kind == faultHang:
			select {
			case <-r.Context().Done():
			case <-s.closing:
			}
			return
		case f.kind == faultStatus:
			s.write(w, f.status, f.status, http.StatusText(f.status), nil)
			return
		case f.kind == faultReject:
			s.write(w, http.StatusOK, f.code, f.msg, nil)
			return
		}
		if msg := s.checkSignature(r); msg != "" {
			s.write(w, http.StatusOK, CodeUnauthorized, msg, nil)
			return
		}
		if k := r.PathValue("appKey"); k != "" && k != s.AppKey {
			s.write(w, http.StatusOK, CodeForbidden, "appKey in the path does not match the AppKey header", nil)
			return
		}
		data, code, msg := h(r)
		if code != CodeOK {
			data = nil
		}
		s.write(w, http.StatusOK, code, msg, data)
	}
}

// checkSignature returns why the request's signature is refused, or "".
func (s *Server) checkSignature(r *http.Request) string {
	appKey, nonce, cur, sum := r.Header.Get("AppKey"), r.Header.Get("Nonce"), r.Header.Get("CurTime"), r.Header.Get("CheckSum")
	if appKey == "" || nonce == "" || cur == "" || sum == "" {
		return "Unauthorized: missing AppKey, Nonce, CurTime or CheckSum"
	}
	if appKey != s.AppKey {
		return "Unauthorized: unknown AppKey"
	}
	if len(nonce) > 128 {
		return "Unauthorized: Nonce longer than 128 characters"
	}
	if sum != sha1Hex(s.AppSecret+nonce+cur) {
		return "Unauthorized: CheckSum mismatch"
	}
	sec, err := strconv.ParseInt(cur, 10, 64)
	if err != nil {
		return "Unauthorized: CurTime is not a unix time"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if d := now.Sub(time.Unix(sec, 0)); d > SignatureTolerance || -d > SignatureTolerance {
		return "Unauthorized: signature expired (CurTime too far from the server clock)"
	}
	if len(s.nonces) > 4096 {
		for n, at := range s.nonces {
			if now.Sub(at) > 2*SignatureTolerance {
				delete(s.nonces, n)
			}
		}
	}
	if _, used := s.nonces[nonce]; used {
		return "Unauthorized: Nonce already used"
	}
	s.nonces[nonce] = now
	return ""
}

func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func md5Hex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func validUUID(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("_@.-", c) >= 0) {
			return false
		}
	}
	return true
}

// userData is an account as the fake returns it.
type userData struct {
	UserUUID  string `json:"userUuid"`
	UserToken string `json:"userToken"`
	Name      string `json:"name"`
	State     int    `json:"state"`
}

func (a *account) data() userData {
	st := 1
	if a.banned {
		st = 2
	}
	return userData{UserUUID: a.uuid, UserToken: a.token, Name: a.name, State: st}
}

func decode(r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	return dec.Decode(v) == nil
}

type userRequest struct {
	UserUUID string `json:"userUuid"`
	Name     string `json:"name"`
}

func (s *Server) addUser(r *http.Request) (any, int, string) {
	var req userRequest
	if !decode(r, &req) {
		return nil, CodeBadRequest, "Bad Request: body is not JSON"
	}
	if !validUUID(req.UserUUID) {
		return nil, CodeBadRequest, "Bad Request: userUuid invalid"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.accounts[req.UserUUID]; ok {
		return nil, CodeExists, "Target Already Exists"
	}
	a := &account{uuid: req.UserUUID, name: req.Name, token: randomHex(16)}
	s.accounts[a.uuid] = a
	return a.data(), CodeOK, ""
}

func (s *Server) batchGetUser(r *http.Request) (any, int, string) {
	q := r.URL.Query().Get("userUuids")
	if q == "" {
		return nil, CodeBadRequest, "Bad Request: userUuids is required"
	}
	ids := strings.Split(q, ",")
	if len(ids) > 100 {
		return nil, CodeBadRequest, "Bad Request: at most 100 userUuids"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []userData{}
	for _, id := range ids {
		if a, ok := s.accounts[id]; ok {
			out = append(out, a.data())
		}
	}
	return out, CodeOK, ""
}

func (s *Server) refreshUserToken(r *http.Request) (any, int, string) {
	var req userRequest
	if !decode(r, &req) || req.UserUUID == "" {
		return nil, CodeBadRequest, "Bad Request: userUuid is required"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[req.UserUUID]
	if !ok {
		return nil, CodeNotFound, "Not Found: user not exist"
	}
	a.token = randomHex(16)
	return map[string]string{"userUuid": a.uuid, "userToken": a.token}, CodeOK, ""
}

func (s *Server) setBanned(r *http.Request, banned bool) (any, int, string) {
	var req userRequest
	if !decode(r, &req) || req.UserUUID == "" {
		return nil, CodeBadRequest, "Bad Request: userUuid is required"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[req.UserUUID]
	if !ok {
		return nil, CodeNotFound, "Not Found: user not exist"
	}
	a.banned = banned
	return nil, CodeOK, ""
}

type memberData struct {
	UserUUID string `json:"userUuid"`
	Name     string `json:"name"`
	Role     string `json:"role"`
}

type meetingData struct {
	MeetingID     int64        `json:"meetingId"`
	MeetingNum    string       `json:"meetingNum"`
	Subject       string       `json:"subject"`
	OwnerUserUUID string       `json:"ownerUserUuid"`
	State         int          `json:"state"`
	StartTime     int64        `json:"startTime,omitempty"`
	EndTime       int64        `json:"endTime,omitempty"`
	Members       []memberData `json:"members"`
}

func (m *meeting) data() meetingData {
	d := meetingData{MeetingID: m.id, MeetingNum: m.num, Subject: m.subject, OwnerUserUUID: m.owner,
		State: m.state, StartTime: m.startTime, EndTime: m.endTime, Members: []memberData{}}
	for _, mb := range m.members {
		d.Members = append(d.Members, memberData{UserUUID: mb.uuid, Name: mb.name, Role: mb.role})
	}
	return d
}

type createRequest struct {
	UserUUID  string `json:"userUuid"`
	Subject   string `json:"subject"`
	Password  string `json:"password"`
	StartTime int64  `json:"startTime"`
	EndTime   int64  `json:"endTime"`
}

func (s *Server) createMeeting(r *http.Request) (any, int, string) {
	typ := r.PathValue("type")
	if typ != "1" && typ != "3" {
		return nil, CodeBadRequest, "Bad Request: type must be 1 or 3"
	}
	var req createRequest
	if !decode(r, &req) {
		return nil, CodeBadRequest, "Bad Request: body is not JSON"
	}
	if typ == "3" && req.StartTime <= 0 {
		return nil, CodeBadRequest, "Bad Request: startTime is required for a scheduled meeting"
	}
	if req.EndTime > 0 && req.EndTime <= req.StartTime {
		return nil, CodeEndBeforeFrom, "meeting end time must be after its start time"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.accounts[req.UserUUID]; !ok {
		return nil, CodeNotFound, "Not Found: user not exist"
	}
	m := s.newMeetingLocked(req.UserUUID, req.Subject)
	m.password, m.startTime, m.endTime = req.Password, req.StartTime, req.EndTime
	return m.data(), CodeOK, ""
}

func (s *Server) newMeetingLocked(owner, subject string) *meeting {
	s.nextID++
	m := &meeting{id: s.nextID, num: strconv.FormatInt(800000000+s.nextID, 10), subject: subject, owner: owner, state: StateInit}
	s.byNum[m.num], s.byID[m.id] = m, m
	return m
}

func (s *Server) meetingInfo(r *http.Request) (any, int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.byNum[r.PathValue("meetingNum")]
	if !ok {
		return nil, CodeNotFound, "Not Found: meeting not exist"
	}
	return m.data(), CodeOK, ""
}

func (s *Server) cancelMeeting(r *http.Request) (any, int, string) {
	id, _ := strconv.ParseInt(r.PathValue("meetingId"), 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.byID[id]
	if !ok {
		return nil, CodeNotFound, "Not Found: meeting not exist"
	}
	if m.state != StateInit {
		return nil, CodeBadRequest, "Bad Request: only a meeting that has not started can be canceled"
	}
	m.state = StateCanceled
	return nil, CodeOK, ""
}

func (s *Server) closeMeeting(r *http.Request) (any, int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.byNum[r.PathValue("meetingNum")]
	if !ok || m.state == StateEnded || m.state == StateCanceled || m.state == StateRecycled {
		return nil, CodeNotFound, "Not Found: meeting not exist or already closed"
	}
	m.state = StateEnded
	if r.PathValue("recycle") == "true" {
		m.state = StateRecycled
	}
	m.members = nil
	return nil, CodeOK, ""
}

// ValidToken reports whether token is the current SDK token of the account
// (a refresh-user-token makes the previous one invalid).
func (s *Server) ValidToken(userUUID, token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[userUUID]
	return ok && token != "" && a.token == token
}

// Banned reports whether the account exists and is banned.
func (s *Server) Banned(userUUID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[userUUID]
	return ok && a.banned
}

// AddUser creates an account directly (as if made earlier through the
// API) and returns its token.
func (s *Server) AddUser(userUUID, name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := &account{uuid: userUUID, name: name, token: randomHex(16)}
	s.accounts[userUUID] = a
	return a.token
}

// MeetingInfo is a snapshot of a meeting of the fake.
type MeetingInfo struct {
	ID      int64
	Num     string
	Subject string
	Owner   string
	State   int
	Members []string
}

// AddMeeting creates a meeting directly (state StateInit) and returns its
// number.
func (s *Server) AddMeeting(owner, subject string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newMeetingLocked(owner, subject).num
}

// Meeting returns a snapshot of a meeting.
func (s *Server) Meeting(meetingNum string) (MeetingInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.byNum[meetingNum]
	if !ok {
		return MeetingInfo{}, false
	}
	mi := MeetingInfo{ID: m.id, Num: m.num, Subject: m.subject, Owner: m.owner, State: m.state, Members: []string{}}
	for _, mb := range m.members {
		mi.Members = append(mi.Members, mb.uuid)
	}
	return mi, true
}

// SetCallbackURL sets where MemberEnter, MemberLeave, EndMeeting, Invite
// and CancelInvite send their callbacks ("" = change state only).
func (s *Server) SetCallbackURL(url string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.callbackURL = url
}

// MemberEnter puts a user into a meeting, like the user joining from the
// SDK: a meeting that had not started starts (MEETING_STATE_CHANGE_EVENT
// state 2), then MEETING_MEMBER_ENTRY is sent. An error when the meeting is
// unknown or closed, or a callback is not answered 2xx.
func (s *Server) MemberEnter(meetingNum, userUUID string) error {
	s.mu.Lock()
	m, ok := s.byNum[meetingNum]
	if !ok || m.state == StateEnded || m.state == StateCanceled || m.state == StateRecycled {
		s.mu.Unlock()
		return fmt.Errorf("neteasetest: meeting %s does not exist or is closed", meetingNum)
	}
	started := m.state == StateInit
	m.state = StateStarted
	name, role := userUUID, "member"
	if a, ok := s.accounts[userUUID]; ok && a.name != "" {
		name = a.name
	}
	if userUUID == m.owner {
		role = "host"
	}
	if !slices.ContainsFunc(m.members, func(mb member) bool { return mb.uuid == userUUID }) {
		m.members = append(m.members, member{uuid: userUUID, name: name, role: role})
	}
	id, url := m.id, s.callbackURL
	s.mu.Unlock()
	if url == "" {
		return nil
	}
	if started {
		if err := s.notify(url, EventStateChange, map[string]any{"meetingId": id, "meetingNum": meetingNum, "state": StateStarted}); err != nil {
			return err
		}
	}
	return s.notify(url, EventMemberEntry, map[string]any{"meetingId": id, "meetingNum": meetingNum, "userUuid": userUUID, "userName": name, "role": role})
}

// MemberLeave takes a user out of a meeting and sends MEETING_MEMBER_LEAVE.
func (s *Server) MemberLeave(meetingNum, userUUID string) error {
	s.mu.Lock()
	m, ok := s.byNum[meetingNum]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("neteasetest: meeting %s does not exist", meetingNum)
	}
	i := slices.IndexFunc(m.members, func(mb member) bool { return mb.uuid == userUUID })
	if i < 0 {
		s.mu.Unlock()
		return fmt.Errorf("neteasetest: %s is not in meeting %s", userUUID, meetingNum)
	}
	mb := m.members[i]
	m.members = slices.Delete(m.members, i, i+1)
	id, url := m.id, s.callbackURL
	s.mu.Unlock()
	if url == "" {
		return nil
	}
	return s.notify(url, EventMemberLeave, map[string]any{"meetingId": id, "meetingNum": meetingNum, "userUuid": userUUID, "userName": mb.name, "role": mb.role})
}

// EndMeeting ends a meeting as its host would: every member leaves
// (MEETING_MEMBER_LEAVE each), then MEETING_STATE_CHANGE_EVENT state 3.
func (s *Server) EndMeeting(meetingNum string) error {
	s.mu.Lock()
	m, ok := s.byNum[meetingNum]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("neteasetest: meeting %s does not exist", meetingNum)
	}
	members := slices.Clone(m.members)
	m.members, m.state = nil, StateEnded
	id, url := m.id, s.callbackURL
	s.mu.Unlock()
	if url == "" {
		return nil
	}
	for _, mb := range members {
		if err := s.notify(url, EventMemberLeave, map[string]any{"meetingId": id, "meetingNum": meetingNum, "userUuid": mb.uuid, "userName": mb.name, "role": mb.role}); err != nil {
			return err
		}
	}
	return s.notify(url, EventStateChange, map[string]any{"meetingId": id, "meetingNum": meetingNum, "state": StateEnded})
}

// Invite sends MEETING_MEMBER_INVITE for each invitee (one callback each).
func (s *Server) Invite(meetingNum, inviter string, invitees ...string) error {
	return s.invite(EventMemberInvite, meetingNum, inviter, invitees)
}

// CancelInvite sends MEETING_MEMBER_INVITE_CANCEL for each invitee.
func (s *Server) CancelInvite(meetingNum, inviter string, invitees ...string) error {
	return s.invite(EventMemberInviteCancel, meetingNum, inviter, invitees)
}

func (s *Server) invite(eventType, meetingNum, inviter string, invitees []string) error {
	s.mu.Lock()
	m, ok := s.byNum[meetingNum]
	url := s.callbackURL
	var id int64
	if ok {
		id = m.id
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("neteasetest: meeting %s does not exist", meetingNum)
	}
	if url == "" {
		return nil
	}
	for _, inv := range invitees {
		if err := s.notify(url, eventType, map[string]any{"meetingId": id, "meetingNum": meetingNum, "inviterUserUuid": inviter, "inviteeUserUuid": inv}); err != nil {
			return err
		}
	}
	return nil
}

// notify sends a callback and wants a 2xx answer.
func (s *Server) notify(url, eventType string, body any) error {
	res, err := s.SendCallback(url, eventType, body)
	if err != nil {
		return err
	}
	if res.Status < 200 || res.Status > 299 {
		return fmt.Errorf("neteasetest: callback %s answered HTTP %d: %s", eventType, res.Status, strings.TrimSpace(string(res.Body)))
	}
	return nil
}
