package notify

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// SMSSender sends a text message. Twilio is the real one.
type SMSSender interface {
	SendSMS(ctx context.Context, to, body string) error
}

// Twilio sends SMS through Twilio's Messages API, or any provider that
// speaks its shape: POST {BaseURL}/2010-04-01/Accounts/{AccountSID}/Messages.json
// with form fields To, From and Body, authenticated with HTTP basic auth.
type Twilio struct {
	BaseURL    string // e.g. https://api.twilio.com
	AccountSID string
	AuthToken  string
	From       string // sender number (E.164) or alphanumeric sender id
	Client     *http.Client
}

var _ SMSSender = (*Twilio)(nil)

// SendSMS posts one message. A 4xx answer other than 429 is permanent
// (ErrPermanent): retrying the same request cannot succeed.
func (t *Twilio) SendSMS(ctx context.Context, to, body string) error {
	endpoint := strings.TrimRight(t.BaseURL, "/") + "/2010-04-01/Accounts/" + url.PathEscape(t.AccountSID) + "/Messages.json"
	form := url.Values{"To": {to}, "From": {t.From}, "Body": {body}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("notify: sms request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(t.AccountSID, t.AuthToken)
	client := t.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		// The error names the URL, which holds the account id but no
		// secret and no phone number.
		return fmt.Errorf("notify: sms: %w", err)
	}
	defer resp.Body.Close()
	// The provider's answer may echo the recipient's number: keep only
	// the status in errors.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("notify: sms provider answered %s", resp.Status)
	default:
		return permanent(fmt.Errorf("notify: sms provider refused the message: %s", resp.Status))
	}
}
