// Package notify tells people what happened to their appointments, by
// email (SMTP) and SMS (an HTTP provider with Twilio's API shape).
//
// Other packages never send anything themselves: they write an event to
// the transactional outbox with store.Enqueue, in the same transaction as
// the change it announces. The Worker here claims the deliveries that are
// due (FOR UPDATE SKIP LOCKED, with a lease, so several nodes can run it),
// renders each message in the recipient's language at send time, sends it,
// and retries with exponential back-off. It also schedules reminders of
// upcoming appointments.
//
// Messages carry no health data: subjects and SMS say when and with whom,
// never why. Addresses and bodies are never logged. Without SMTP or SMS
// configuration nothing leaves the machine: deliveries are marked held and
// shown, rendered, on the admin outbox page.
package notify

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"regexp"
	"strings"
	"time"
	_ "time/tzdata" // practitioners' zones must load on a machine without zoneinfo

	"teleconsult/problem"
	"teleconsult/store"
)

// ErrPermanent marks a delivery failure that retrying cannot fix (a
// refused address, a message that cannot be rendered): the message is
// marked failed at once.
var ErrPermanent = errors.New("permanent failure")

func permanent(err error) error { return fmt.Errorf("%w: %w", ErrPermanent, err) }

// ErrConfig is a configuration the worker cannot run with.
var ErrConfig = problem.New(problem.Invalid, "notify_config_invalid", "the notification configuration is not valid")

// Config is the notify configuration. Zero durations take the defaults
// given beside them.
type Config struct {
	// BaseURL is the public address of the service, used in links
	// (e.g. https://rdv.example.org), without a trailing slash.
	BaseURL string
	// SiteName names the service in email footers (default: BaseURL's host).
	SiteName string
	// MailFrom is the sender, e.g. "Teleconsult <noreply@example.org>".
	MailFrom string
	// SMTPURL is SMTP_URL (see ParseSMTPURL). Empty: emails are held.
	SMTPURL string
	// SMTPTLS, if set, is used for STARTTLS and smtps (e.g. a private CA).
	SMTPTLS *tls.Config
	// SMSURL, SMSAccount, SMSToken and SMSFrom configure the SMS provider
	// (all or none). Empty: SMS are held.
	SMSURL, SMSAccount, SMSToken, SMSFrom string
	// TokenKey signs the one-click cancel and reschedule links: 32 random
	// bytes kept out of the database, the same on every node.
	TokenKey []byte
	// Reminders is the reminder schedule (default DefaultReminders).
	Reminders []Reminder

	PollInterval     time.Duration // how often to look for due messages (2s)
	ReminderInterval time.Duration // how often to scan for reminders (1m)
	Lease            time.Duration // how long a claim lasts before another worker may retry it (2m)
	MaxAttempts      int           // attempts before a message is failed (8)
	RetryBase        time.Duration // first retry delay, doubled each time (30s)
	RetryMax         time.Duration // longest retry delay (1h)
	Batch            int           // messages claimed at once (20)
	// Retention is how long settled messages are kept for the admin page
	// (90 days); they name people and times, so not for ever.
	Retention time.Duration

	// Mailer and SMS, when set, replace SMTPURL and the SMS settings
	// (another transport, or a recorder in a test).
	Mailer Mailer
	SMS    SMSSender
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.PollInterval, 2*time.Second)
	def(&c.ReminderInterval, time.Minute)
	// Why: each send is cut off at half the lease (DeliverDue), so a live
	// worker never loses its claim; 2 minutes gives a slow SMTP server a
	// minute, as SMTPMailer.Timeout does.
	def(&c.Lease, 2*time.Minute)
	def(&c.RetryBase, 30*time.Second)
	def(&c.RetryMax, time.Hour)
	if c.MaxAttempts <= 0 {
		// Why: 30s doubling to 1h over 8 attempts spans about 2 hours,
		// long enough to ride out a provider outage, short enough that a
		// reminder is not sent after the appointment.
		c.MaxAttempts = 8
	}
	if c.Batch <= 0 {
		c.Batch = 20
	}
	def(&c.Retention, 90*24*time.Hour)
	if c.Reminders == nil {
		c.Reminders = DefaultReminders
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.SiteName == "" {
		c.SiteName = strings.TrimPrefix(strings.TrimPrefix(c.BaseURL, "https://"), "http://")
	}
}

// Worker delivers the outbox and schedules reminders. Run one per node;
// any number may run against the same database.
type Worker struct {
	db      *store.DB
	cfg     Config
	now     func() time.Time
	mailer  Mailer    // nil: emails are held
	sms     SMSSender // nil: SMS are held
	metrics *metrics
}

// NewWorker checks cfg and returns a worker reading the clock with now
// (time.Now in production; a fake clock in tests).
func NewWorker(db *store.DB, cfg Config, now func() time.Time) (*Worker, error) {
	cfg.defaults()
	if now == nil {
		now = time.Now
	}
	if cfg.BaseURL == "" || !(strings.HasPrefix(cfg.BaseURL, "http://") || strings.HasPrefix(cfg.BaseURL, "https://")) {
		return nil, ErrConfig.With("notify: BASE_URL must be an http(s) URL")
	}
	if len(cfg.TokenKey) < 16 {
		return nil, ErrConfig.With("notify: the link signing key must be at least 16 bytes")
	}
	for _, r := range cfg.Reminders {
		if err := r.check(); err != nil {
			return nil, err
		}
	}
	w := &Worker{db: db, cfg: cfg, now: now, mailer: cfg.Mailer, sms: cfg.SMS, metrics: newMetrics()}
	if w.mailer == nil && cfg.SMTPURL != "" {
		sc, err := ParseSMTPURL(cfg.SMTPURL)
		if err != nil {
			return nil, err
		}
		if cfg.SMTPTLS != nil {
			sc.TLS = cfg.SMTPTLS
		}
		w.mailer = &SMTPMailer{Config: sc}
	}
	if w.mailer != nil && cfg.MailFrom == "" {
		return nil, ErrConfig.With("notify: MAIL_FROM is required with SMTP_URL")
	}
	if cfg.MailFrom != "" {
		from, err := mail.ParseAddress(cfg.MailFrom)
		if err != nil {
			return nil, ErrConfig.With(`notify: MAIL_FROM must be an address such as "Teleconsult <noreply@example.org>"`)
		}
		// Re-rendered so that a non-ASCII display name is encoded.
		w.cfg.MailFrom = from.String()
	}
	if w.sms == nil {
		set := 0
		for _, v := range []string{cfg.SMSURL, cfg.SMSAccount, cfg.SMSToken, cfg.SMSFrom} {
			if v != "" {
				set++
			}
		}
		switch set {
		case 0:
		case 4:
			if !strings.HasPrefix(cfg.SMSURL, "http://") && !strings.HasPrefix(cfg.SMSURL, "https://") {
				return nil, ErrConfig.With("notify: SMS_URL must be an http(s) URL")
			}
			w.sms = &Twilio{BaseURL: cfg.SMSURL, AccountSID: cfg.SMSAccount, AuthToken: cfg.SMSToken, From: cfg.SMSFrom,
				Client: &http.Client{Timeout: 30 * time.Second}}
		default:
			return nil, ErrConfig.With("notify: set all of SMS_URL, SMS_ACCOUNT, SMS_TOKEN and SMS_FROM, or none")
		}
	}
	return w, nil
}

// Run delivers due messages every PollInterval and schedules reminders
// every ReminderInterval until ctx is done. Errors are logged and retried
// on the next tick: a database restart does not stop the worker.
func (w *Worker) Run(ctx context.Context) error {
	slog.Info("notify: worker started", "email", w.mailer != nil, "sms", w.sms != nil)
	poll := time.NewTicker(w.cfg.PollInterval)
	defer poll.Stop()
	remind := time.NewTicker(w.cfg.ReminderInterval)
	defer remind.Stop()
	w.tickReminders(ctx)
	for {
		w.tickDeliveries(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-remind.C:
			w.tickReminders(ctx)
		case <-poll.C:
		}
	}
}

func (w *Worker) tickDeliveries(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := w.DeliverDue(ctx)
		if err != nil {
			if ctx.Err() == nil {
				slog.Error("notify: deliver", "err", err)
			}
			return
		}
		if n < w.cfg.Batch {
			return
		}
	}
}

func (w *Worker) tickReminders(ctx context.Context) {
	if n, err := w.ScheduleReminders(ctx); err != nil {
		if ctx.Err() == nil {
			slog.Error("notify: schedule reminders", "err", err)
		}
	} else if n > 0 {
		slog.Info("notify: reminders scheduled", "count", n)
	}
	if n, err := w.Prune(ctx); err != nil {
		if ctx.Err() == nil {
			slog.Error("notify: prune outbox", "err", err)
		}
	} else if n > 0 {
		slog.Info("notify: old messages deleted", "count", n)
	}
}

// pruneBatch bounds one prune so that it never holds locks for long.
const pruneBatch = 1000

// Prune deletes settled messages older than the retention period and
// returns how many events went.
func (w *Worker) Prune(ctx context.Context) (int64, error) {
	return store.PruneOutbox(ctx, w.db.Pool, w.now().Add(-w.cfg.Retention), pruneBatch)
}

// DeliverDue claims one batch of due deliveries, delivers them and
// records the outcome of each. It returns how many it claimed.
func (w *Worker) DeliverDue(ctx context.Context) (int, error) {
	claimID := newClaimID()
	ds, err := store.ClaimOutbox(ctx, w.db.Pool, claimID, w.now(), w.cfg.Lease, w.cfg.Batch)
	if err != nil {
		return 0, err
	}
	for i, d := range ds {
		if ctx.Err() != nil {
			// Unsettled claims are retried after their lease.
			return len(ds), ctx.Err()
		}
		// Why: a send must end before the lease does, or another worker
		// could claim the message again and send it twice. A batch slowed
		// by a sluggish server hands its tail back, unattempted.
		if now := w.now(); !now.Before(d.ClaimedUntil.Add(-w.cfg.Lease / 2)) {
			for _, rest := range ds[i:] {
				err := store.SettleOutbox(ctx, w.db.Pool, rest.ID, claimID,
					store.OutboxOutcome{Status: store.MessagePending, NextAttemptAt: now, Postponed: true})
				if err != nil && !errors.Is(err, store.ErrLeaseLost) {
					return len(ds), err
				}
			}
			return len(ds), nil
		}
		sendCtx, cancel := context.WithTimeout(ctx, w.cfg.Lease/2)
		out := w.deliver(sendCtx, d)
		cancel()
		if err := store.SettleOutbox(ctx, w.db.Pool, d.ID, claimID, out); err != nil {
			if errors.Is(err, store.ErrLeaseLost) {
				slog.Warn("notify: lease lost; the message may be sent twice", "message", d.ID)
				continue
			}
			return len(ds), err
		}
		if out.Postponed {
			continue // not an attempt: nothing to count or log
		}
		w.metrics.deliveries.WithLabelValues(d.Channel, out.Status).Inc()
		// One line per sent message is noise at volume: debug. Retries,
		// held and cancelled messages are worth seeing; failures warn.
		log := slog.Info
		switch out.Status {
		case store.MessageSent:
			log = slog.Debug
		case store.MessageFailed:
			log = slog.Warn
		}
		log("notify: delivery", "message", d.ID, "kind", d.Kind, "channel", d.Channel,
			"status", out.Status, "attempt", d.Attempts, "error", out.LastError)
	}
	return len(ds), nil
}

// backoff is the delay before attempt n+1 after n failed attempts.
func (w *Worker) backoff(n int) time.Duration {
	d := w.cfg.RetryBase
	for i := 1; i < n && d < w.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, w.cfg.RetryMax)
}

// deliver renders and sends one delivery and says what became of it.
func (w *Worker) deliver(ctx context.Context, d store.OutboxDelivery) store.OutboxOutcome {
	now := w.now()
	fail := func(err error) store.OutboxOutcome {
		o := store.OutboxOutcome{Status: store.MessageFailed, At: now, LastError: errorText(err)}
		if !errors.Is(err, ErrPermanent) && d.Attempts < w.cfg.MaxAttempts {
			o.Status, o.NextAttemptAt = store.MessagePending, now.Add(w.backoff(d.Attempts))
		}
		return o
	}
	in, skip, wait, err := w.load(ctx, d, now)
	if err != nil {
		return fail(err)
	}
	if wait > 0 {
		return store.OutboxOutcome{Status: store.MessagePending, NextAttemptAt: now.Add(wait), Postponed: true,
			LastError: "waiting for the payment to confirm the appointment"}
	}
	if skip != "" {
		return store.OutboxOutcome{Status: store.MessageCancelled, At: now, LastError: skip}
	}
	shown, err := render(in, linker{base: w.cfg.BaseURL, redact: true}, w.cfg.SiteName)
	if err != nil {
		return fail(err)
	}
	real, err := render(in, linker{base: w.cfg.BaseURL, secret: w.cfg.TokenKey}, w.cfg.SiteName)
	if err != nil {
		return fail(err)
	}
	out := store.OutboxOutcome{At: now}
	switch d.Channel {
	case store.ChannelEmail:
		out.Subject, out.Body = shown.Subject, shown.text()
		if in.Recipient.Email == "" {
			return store.OutboxOutcome{Status: store.MessageCancelled, At: now, LastError: "no email address", Subject: out.Subject, Body: out.Body}
		}
		if w.mailer == nil {
			out.Status = store.MessageHeld
			return out
		}
		e, err := w.email(d, in.Recipient, real, now)
		if err == nil {
			err = w.mailer.SendEmail(ctx, e)
		}
		if err != nil {
			o := fail(err)
			o.Subject, o.Body = out.Subject, out.Body
			return o
		}
	case store.ChannelSMS:
		out.Body = shown.SMS
		if real.SMS == "" {
			return store.OutboxOutcome{Status: store.MessageCancelled, At: now, LastError: "this kind has no SMS form"}
		}
		if in.Recipient.Phone == "" {
			return store.OutboxOutcome{Status: store.MessageCancelled, At: now, LastError: "no phone number", Body: out.Body}
		}
		if w.sms == nil {
			out.Status = store.MessageHeld
			return out
		}
		if err := w.sms.SendSMS(ctx, in.Recipient.Phone, real.SMS); err != nil {
			o := fail(err)
			o.Body = out.Body
			return o
		}
	default:
		return fail(permanent(fmt.Errorf("unknown channel %q", d.Channel)))
	}
	out.Status = store.MessageSent
	return out
}

// paymentWait is how long a confirmation waits before looking again at
// an appointment that awaits payment.
const paymentWait = time.Minute

// load reads what the message is made of, at send time. A non-empty skip
// says why the message is no longer relevant and must not be sent; a
// non-zero wait, that it is not due yet.
func (w *Worker) load(ctx context.Context, d store.OutboxDelivery, now time.Time) (in renderInput, skip string, wait time.Duration, err error) {
	in = renderInput{Kind: d.Kind, Data: d.Data, RxID: d.PrescriptionID, Now: now}
	in.Recipient, err = store.GetRecipient(ctx, w.db.Pool, d.RecipientID)
	if errors.Is(err, store.ErrNotFound) {
		return in, "recipient account deleted", 0, nil
	}
	if err != nil {
		return in, "", 0, err
	}
	if in.Recipient.Erased {
		return in, "recipient account erased", 0, nil
	}
	if d.AppointmentID != "" {
		a, err := store.GetAppointmentNotice(ctx, w.db.Pool, d.AppointmentID)
		if errors.Is(err, store.ErrNotFound) {
			return in, "appointment deleted", 0, nil
		}
		if err != nil {
			return in, "", 0, err
		}
		in.Appt = &a
		switch d.Kind {
		case store.EventAppointmentReminder:
			// Checked again here, whatever cancelled the queued reminder
			// or not: only a still-confirmed appointment at the same time,
			// still to come, is reminded.
			if a.Status != store.StatusConfirmed {
				return in, "appointment no longer confirmed", 0, nil
			}
			if s, err := time.Parse(time.RFC3339, d.Data["starts_at"]); err != nil || !s.Equal(a.StartsAt) {
				return in, "appointment moved", 0, nil
			}
			if !a.StartsAt.After(now) {
				return in, "appointment already started", 0, nil
			}
		case store.EventAppointmentBooked, store.EventAppointmentDelayed, store.EventPaymentActionRequired:
			if a.Status == store.StatusCancelled || a.Status == store.StatusExpired {
				return in, "appointment no longer booked", 0, nil
			}
			// A booking is confirmed once paid: until then (or until the
			// hold lapses and the appointment expires) its confirmation
			// waits.
			if d.Kind == store.EventAppointmentBooked && a.Status == store.StatusPendingPayment {
				return in, "", paymentWait, nil
			}
		}
	}
	if d.Kind == store.EventWaitlistOffer {
		dr, err := store.GetPractitionerNotice(ctx, w.db.Pool, d.Data["practitioner_id"])
		if errors.Is(err, store.ErrNotFound) {
			return in, "practitioner not found", 0, nil
		}
		if err != nil {
			return in, "", 0, err
		}
		in.Dr = &dr
	}
	return in, "", 0, nil
}

// email cuts a rendered message into an Email for r.
func (w *Worker) email(d store.OutboxDelivery, r store.Recipient, m message, now time.Time) (Email, error) {
	html, err := m.html()
	if err != nil {
		return Email{}, permanent(err)
	}
	e := Email{
		From:      w.cfg.MailFrom,
		To:        (&mail.Address{Name: oneLine(r.Name), Address: r.Email}).String(),
		Subject:   m.Subject,
		Text:      m.text(),
		HTML:      html,
		MessageID: messageID(d.ID, w.cfg.MailFrom),
		Date:      now,
	}
	if m.Calendar != nil {
		method := "PUBLISH"
		if m.Calendar.Cancelled {
			method = "CANCEL"
		}
		name := "appointment.ics"
		if m.Lang == "fr" {
			name = "rendez-vous.ics"
		}
		e.Attachments = append(e.Attachments, Attachment{
			Filename:    name,
			ContentType: "text/calendar; charset=utf-8; method=" + method,
			Data:        m.Calendar.ics(),
		})
	}
	return e, nil
}

// errorText is the error kept on the message for admins and logged: its
// text with any email address or phone number masked (an SMTP server's
// reply often quotes the recipient), cut to a sane length.
func errorText(err error) string {
	s := maskAddresses(err.Error())
	if len(s) > 500 {
		s = s[:500]
	}
	return s
}

var (
	emailPattern = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@([A-Za-z0-9.\-]+)`)
	phonePattern = regexp.MustCompile(`\+[0-9][0-9 ]{6,}[0-9]|\b0[0-9]{9}\b`)
)

// maskAddresses hides email addresses and phone numbers in s, keeping
// only the email's domain and the phone's last two digits.
func maskAddresses(s string) string {
	s = emailPattern.ReplaceAllString(s, "***@$1")
	return phonePattern.ReplaceAllStringFunc(s, func(p string) string { return "***" + p[len(p)-2:] })
}

func newClaimID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// EnvConfig reads the transport settings from the environment through
// getenv (os.Getenv): SMTP_URL, MAIL_FROM, SMS_URL, SMS_ACCOUNT,
// SMS_TOKEN and SMS_FROM. The caller adds BaseURL and TokenKey. Unset
// variables leave the transport off: its messages are held.
func EnvConfig(getenv func(string) string) Config {
	return Config{
		SMTPURL:    getenv("SMTP_URL"),
		MailFrom:   getenv("MAIL_FROM"),
		SMSURL:     getenv("SMS_URL"),
		SMSAccount: getenv("SMS_ACCOUNT"),
		SMSToken:   getenv("SMS_TOKEN"),
		SMSFrom:    getenv("SMS_FROM"),
	}
}
