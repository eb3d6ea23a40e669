package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"teleconsult/problem"
)

// ErrSMTPURL is a malformed SMTP_URL.
var ErrSMTPURL = problem.New(problem.Invalid, "smtp_url_invalid", "SMTP_URL is not valid")

// Email is one message to one person: a text part, an HTML part and
// optional attachments.
type Email struct {
	From, To    string
	Subject     string
	Text, HTML  string
	Attachments []Attachment
	// MessageID is stable for one outbox delivery, so that a message
	// re-sent after a crash can be recognised as a duplicate.
	MessageID string
	Date      time.Time
}

// Attachment is a file attached to an Email.
type Attachment struct {
	Filename    string
	ContentType string // e.g. "text/calendar; charset=utf-8; method=PUBLISH"
	Data        []byte
}

// Mailer sends emails. SMTPMailer is the real one.
type Mailer interface {
	SendEmail(ctx context.Context, e Email) error
}

// SMTPConfig is where and how to submit mail.
type SMTPConfig struct {
	Host, Port string
	Username   string
	Password   string
	// ImplicitTLS is smtps:// (TLS from the first byte, usually port 465);
	// otherwise STARTTLS is used whenever the server offers it.
	ImplicitTLS bool
	// TLS, if set, is used for the TLS handshake (e.g. a private CA);
	// nil means the system roots and the host name.
	TLS *tls.Config
}

// ParseSMTPURL parses SMTP_URL: smtp://user:pass@host:port (STARTTLS when
// the server offers it) or smtps://user:pass@host:port (implicit TLS).
// The port defaults to 587 and 465 respectively; user and password are
// optional and may be percent-encoded.
func ParseSMTPURL(s string) (SMTPConfig, error) {
	u, err := url.Parse(s)
	if err != nil {
		return SMTPConfig{}, ErrSMTPURL.With("SMTP_URL is not a URL")
	}
	var c SMTPConfig
	switch u.Scheme {
	case "smtp":
		c.Port = "587"
	case "smtps":
		c.ImplicitTLS, c.Port = true, "465"
	default:
		return SMTPConfig{}, ErrSMTPURL.With("SMTP_URL must start with smtp:// or smtps://")
	}
	if u.Hostname() == "" {
		return SMTPConfig{}, ErrSMTPURL.With("SMTP_URL has no host")
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return SMTPConfig{}, ErrSMTPURL.With("SMTP_URL must be smtp://user:pass@host:port, without path or query")
	}
	c.Host = u.Hostname()
	if p := u.Port(); p != "" {
		c.Port = p
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	return c, nil
}

// SMTPMailer submits emails to an SMTP server, one connection per message.
type SMTPMailer struct {
	Config SMTPConfig
	// Timeout bounds one submission when ctx has no deadline.
	Timeout time.Duration
}

var _ Mailer = (*SMTPMailer)(nil)

// ErrInsecureAuth refuses to send a password over an unencrypted link.
var ErrInsecureAuth = problem.New(problem.Unavailable, "smtp_insecure_auth", "the SMTP server offers no TLS; refusing to send the password in clear")

// SendEmail submits e. Errors the server reports as permanent (5xx) are
// wrapped in ErrPermanent.
func (m *SMTPMailer) SendEmail(ctx context.Context, e Email) error {
	msg, err := e.bytes()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(m.Config.Host, m.Config.Port)
	timeout := m.Timeout
	if timeout == 0 {
		timeout = time.Minute
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(timeout)
	}
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("notify: smtp dial: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	tlsConfig := m.Config.TLS
	if tlsConfig == nil {
		tlsConfig = &tls.Config{}
	}
	if tlsConfig.ServerName == "" {
		tlsConfig = tlsConfig.Clone()
		tlsConfig.ServerName = m.Config.Host
	}
	if m.Config.ImplicitTLS {
		tc := tls.Client(conn, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("notify: smtp tls: %w", err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, m.Config.Host)
	if err != nil {
		return smtpError("greeting", err)
	}
	defer c.Close()
	if err := c.Hello(helloName(e.From)); err != nil {
		return smtpError("hello", err)
	}
	secure := m.Config.ImplicitTLS
	if !secure {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(tlsConfig); err != nil {
				return smtpError("starttls", err)
			}
			secure = true
		}
	}
	if m.Config.Username != "" {
		if !secure {
			return ErrInsecureAuth
		}
		if err := c.Auth(plainAuth{user: m.Config.Username, pass: m.Config.Password}); err != nil {
			return smtpError("auth", err)
		}
	}
	from, err := mail.ParseAddress(e.From)
	if err != nil {
		return fmt.Errorf("notify: bad sender address: %w", err)
	}
	to, err := mail.ParseAddress(e.To)
	if err != nil {
		return permanent(fmt.Errorf("notify: bad recipient address: %w", err))
	}
	if err := c.Mail(from.Address); err != nil {
		return smtpError("mail from", err)
	}
	if err := c.Rcpt(to.Address); err != nil {
		return smtpError("rcpt to", err)
	}
	w, err := c.Data()
	if err != nil {
		return smtpError("data", err)
	}
	if _, err := w.Write(msg); err != nil {
		return smtpError("data", err)
	}
	if err := w.Close(); err != nil {
		return smtpError("data", err)
	}
	if err := c.Quit(); err != nil {
		// The message was accepted at the end of DATA; a failed QUIT does
		// not un-send it.
		return nil
	}
	return nil
}

// plainAuth is SASL PLAIN. Unlike net/smtp.PlainAuth it does not insist
// on the server name matching: SendEmail itself refuses to authenticate
// without TLS.
type plainAuth struct{ user, pass string }

// Start sends the credentials at once (RFC 4616).
func (a plainAuth) Start(*smtp.ServerInfo) (string, []byte, error) {
	return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
}

// Next refuses any challenge: PLAIN has none.
func (a plainAuth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return nil, errors.New("unexpected server challenge")
	}
	return nil, nil
}

// smtpError wraps an SMTP failure, marking 5xx replies as permanent. The
// server's reply is kept: it names no message content.
func smtpError(step string, err error) error {
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return permanent(fmt.Errorf("notify: smtp %s: %w", step, err))
	}
	return fmt.Errorf("notify: smtp %s: %w", step, err)
}

// helloName is the name we greet the server with: the sender's domain.
func helloName(from string) string {
	if a, err := mail.ParseAddress(from); err == nil {
		if _, domain, ok := strings.Cut(a.Address, "@"); ok && domain != "" {
			return domain
		}
	}
	return "localhost"
}

// bytes renders e as an RFC 5322 message: multipart/alternative (text and
// HTML), inside multipart/mixed when there are attachments.
func (e Email) bytes() ([]byte, error) {
	if strings.ContainsAny(e.To+e.From+e.Subject+e.MessageID, "\r\n") {
		return nil, permanent(errors.New("notify: header value with a line break"))
	}
	var b bytes.Buffer
	date := e.Date
	if date.IsZero() {
		date = time.Now()
	}
	fmt.Fprintf(&b, "From: %s\r\n", e.From)
	fmt.Fprintf(&b, "To: %s\r\n", e.To)
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", e.Subject))
	fmt.Fprintf(&b, "Date: %s\r\n", date.Format(time.RFC1123Z))
	if e.MessageID != "" {
		fmt.Fprintf(&b, "Message-ID: <%s>\r\n", e.MessageID)
	}
	b.WriteString("MIME-Version: 1.0\r\n")
	// Why: automated messages must not trigger vacation auto-replies.
	b.WriteString("Auto-Submitted: auto-generated\r\n")

	alt := func(w *multipart.Writer) error {
		for _, p := range []struct{ ctype, body string }{
			{"text/plain; charset=utf-8", e.Text},
			{"text/html; charset=utf-8", e.HTML},
		} {
			pw, err := w.CreatePart(textproto.MIMEHeader{
				"Content-Type":              {p.ctype},
				"Content-Transfer-Encoding": {"quoted-printable"},
			})
			if err != nil {
				return err
			}
			qw := quotedprintable.NewWriter(pw)
			if _, err := qw.Write([]byte(strings.ReplaceAll(p.body, "\n", "\r\n"))); err != nil {
				return err
			}
			if err := qw.Close(); err != nil {
				return err
			}
		}
		return w.Close()
	}

	if len(e.Attachments) == 0 {
		w := multipart.NewWriter(&b)
		fmt.Fprintf(&b, "Content-Type: multipart/alternative; boundary=%q\r\n\r\n", w.Boundary())
		if err := alt(w); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	mixed := multipart.NewWriter(&b)
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=%q\r\n\r\n", mixed.Boundary())
	var inner bytes.Buffer
	aw := multipart.NewWriter(&inner)
	if err := alt(aw); err != nil {
		return nil, err
	}
	pw, err := mixed.CreatePart(textproto.MIMEHeader{
		"Content-Type": {fmt.Sprintf("multipart/alternative; boundary=%q", aw.Boundary())},
	})
	if err != nil {
		return nil, err
	}
	pw.Write(inner.Bytes())
	for _, a := range e.Attachments {
		pw, err := mixed.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {a.ContentType + "; name=" + quoteParam(a.Filename)},
			"Content-Disposition":       {"attachment; filename=" + quoteParam(a.Filename)},
			"Content-Transfer-Encoding": {"base64"},
		})
		if err != nil {
			return nil, err
		}
		enc := base64.StdEncoding.EncodeToString(a.Data)
		for len(enc) > 76 {
			pw.Write([]byte(enc[:76] + "\r\n"))
			enc = enc[76:]
		}
		pw.Write([]byte(enc + "\r\n"))
	}
	if err := mixed.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func quoteParam(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// messageID is the Message-ID of a delivery: the same on every attempt.
func messageID(deliveryID, from string) string {
	return deliveryID + "@" + helloName(from)
}
