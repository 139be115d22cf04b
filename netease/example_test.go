package netease_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/meetsync/meetsync"
	"github.com/meetsync/meetsync/netease"
	"github.com/meetsync/meetsync/netease/neteasetest"
)

// Build a provider from an app's NetEase credentials and provision a user's
// meeting account. Here the platform is the local fake; in production
// BaseURL is left empty (https://meeting-api.netease.im) or set to the
// gateway of your NetEase region or deployment.
func ExampleNew() {
	fake := neteasetest.NewServer("my-app-key", "my-app-secret")
	defer fake.Close()

	p, err := netease.New(netease.Config{
		AppKey:    "my-app-key",
		AppSecret: "my-app-secret",
		BaseURL:   fake.URL,
		Timeout:   5 * time.Second, // per attempt
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	acct, err := p.EnsureAccount(context.Background(), meetsync.AccountRequest{UserUUID: "alice01", DisplayName: "Alice"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Kind(), acct.UserUUID, fake.ValidToken(acct.UserUUID, acct.UserToken))

	// Server-side logout: the old token stops working.
	next, _ := p.RevokeToken(context.Background(), "alice01")
	fmt.Println(fake.ValidToken("alice01", acct.UserToken), fake.ValidToken("alice01", next.UserToken))
	// Output:
	// netease alice01 true
	// false true
}

// CheckSum signs server API requests; CallbackCheckSum is what the platform
// puts in a callback's CheckSum header.
func ExampleCheckSum() {
	fmt.Println(netease.CheckSum("c9d6ab2f9a6b", "4e1b", "12345678"))
	fmt.Println(netease.CallbackCheckSum("c9d6ab2f9a6b", netease.BodyMD5(nil), "1608110108512"))
	// Output:
	// e5827905af68f6f6036b9c8e95206390a6b94b6b
	// 5ff09cfa862b022a76b542c222caa11af40b6458
}

// VerifyCallback checks a callback and translates it into meetsync events.
func ExampleProvider_VerifyCallback() {
	p, _ := netease.New(netease.Config{AppKey: "my-app-key", AppSecret: "my-app-secret"})
	body := []byte(`{"requestId":"3f2a","eventType":"MEETING_MEMBER_ENTRY","timestamp":1700000000000,` +
		`"body":{"meetingId":1001,"meetingNum":"812345678","userUuid":"alice01"}}`)
	now := time.UnixMilli(1700000001000)
	md := netease.BodyMD5(body)
	h := http.Header{}
	h.Set("appkey", "my-app-key")
	h.Set("CurTime", "1700000000500")
	h.Set("MD5", md)
	h.Set("CheckSum", netease.CallbackCheckSum("my-app-secret", md, "1700000000500"))

	cb, err := p.VerifyCallback(h, body, now)
	if err != nil {
		fmt.Println(err)
		return
	}
	ev := cb.Events[0]
	fmt.Println(cb.RequestID, ev.Type, ev.UserUUID, ev.MeetingNum)

	h.Set("CheckSum", netease.CallbackCheckSum("another-secret", md, "1700000000500"))
	_, err = p.VerifyCallback(h, body, now)
	fmt.Println(err)
	// Output:
	// 3f2a meeting.member_joined alice01 812345678
	// meetsync unauthorized: netease callback rejected: the CheckSum header is wrong (not signed with this app's app_secret)
}
