// Package auth holds accounts, passwords, sessions and roles, the login
// throttle, and the signed join tokens that admit a participant to a
// video room.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"teleconsult/problem"
	"teleconsult/store"
)

// Account roles besides RolePatient and RolePractitioner (declared with
// the join token roles, which share their values).
const (
	RolePharmacist = "pharmacist"
	RoleAdmin      = "admin"
)

// Account is a user of the service.
type Account = store.Account

// Problems of authentication.
var (
	ErrEmailTaken      = problem.New(problem.Conflict, "email_taken", "an account with this email already exists")
	ErrBadCredentials  = problem.New(problem.Unauthorized, "bad_credentials", "wrong email or password")
	ErrTooManyAttempts = problem.New(problem.TooMany, "too_many_attempts", "too many failed attempts; please wait before trying again")
	ErrNoSession       = problem.New(problem.Unauthorized, "unauthorized", "please log in")
	ErrInvalidEmail    = problem.New(problem.Invalid, "invalid_email", "please give a valid email address")
	ErrInvalidName     = problem.New(problem.Invalid, "invalid_name", "please give your name (at most 200 characters)")
	ErrInvalidRole     = problem.New(problem.Invalid, "invalid_role", "role must be patient, practitioner, pharmacist or admin")
	ErrAccountDisabled = problem.New(problem.Forbidden, "account_disabled", "this account is disabled")
)

// Config tunes sessions and the login throttle.
type Config struct {
	SessionIdle     time.Duration // a session unused this long expires
	SessionMax      time.Duration // a session expires this long after login
	AccountFailures int           // failed logins per account per FailureWindow before 429
	IPFailures      int           // failed logins per IP per FailureWindow before 429
	FailureWindow   time.Duration
}

// DefaultConfig is what the service runs with unless told otherwise.
var DefaultConfig = Config{
	SessionIdle:     2 * time.Hour,
	SessionMax:      24 * time.Hour,
	AccountFailures: 10,
	IPFailures:      50,
	FailureWindow:   time.Minute,
}

// Service manages accounts and sessions.
type Service struct {
	db  *store.DB
	cfg Config
	now func() time.Time

	mfa MFAConfig

	mu       sync.Mutex // guards ipFails
	ipFails  map[string][]time.Time
	lastTidy time.Time
}

// NewService returns a Service; now is the clock (time.Now in production).
func NewService(db *store.DB, cfg Config, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{db: db, cfg: cfg, now: now, ipFails: map[string][]time.Time{}}
}

// NormalizeEmail checks and lower-cases an email address.
func NormalizeEmail(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || len(s) > 254 || !strings.Contains(s[strings.LastIndex(s, "@"):], ".") && !strings.HasSuffix(s, "@localhost") {
		return "", ErrInvalidEmail
	}
	return s, nil
}

func checkName(n string) (string, error) {
	n = strings.TrimSpace(n)
	if n == "" || utf8.RuneCountInString(n) > 200 {
		return "", ErrInvalidName
	}
	return n, nil
}

// ValidRole reports whether r is a role.
func ValidRole(r string) bool {
	switch r {
	case RolePatient, RolePractitioner, RolePharmacist, RoleAdmin:
		return true
	}
	return false
}

// Signup creates a patient account.
func (s *Service) Signup(ctx context.Context, email, password, name, language string) (Account, error) {
	return s.Create(ctx, RolePatient, email, password, name, language)
}

// Create makes an account of any role (patients sign up; the others are
// created by an admin).
func (s *Service) Create(ctx context.Context, role, email, password, name, language string) (Account, error) {
	if !ValidRole(role) {
		return Account{}, ErrInvalidRole
	}
	email, err := NormalizeEmail(email)
	if err != nil {
		return Account{}, err
	}
	if name, err = checkName(name); err != nil {
		return Account{}, err
	}
	if err := CheckPassword(password); err != nil {
		return Account{}, err
	}
	if language != "en" {
		language = "fr"
	}
	hash, err := HashPassword(password)
	if err != nil {
		return Account{}, err
	}
	a, err := store.InsertAccount(ctx, s.db.Pool, email, name, role, hash, language)
	if store.ConstraintViolated(err, store.AccountsConstraintEmail) {
		return Account{}, ErrEmailTaken
	}
	return a, err
}

func hashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

func newToken() string {
	b := make([]byte, 32) // 256 bits
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// throttledIP reports whether ip has failed too often, and for how long
// more it must wait.
func (s *Service) throttledIP(ip string, now time.Time) (bool, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cut := now.Add(-s.cfg.FailureWindow)
	if now.Sub(s.lastTidy) > s.cfg.FailureWindow {
		for k, v := range s.ipFails {
			if len(v) == 0 || v[len(v)-1].Before(cut) {
				delete(s.ipFails, k)
			}
		}
		s.lastTidy = now
	}
	v := s.ipFails[ip]
	for len(v) > 0 && v[0].Before(cut) {
		v = v[1:]
	}
	s.ipFails[ip] = v
	if len(v) >= s.cfg.IPFailures {
		return true, v[0].Sub(cut)
	}
	return false, 0
}

func (s *Service) noteIPFailure(ip string, now time.Time) {
	s.mu.Lock()
	s.ipFails[ip] = append(s.ipFails[ip], now)
	s.mu.Unlock()
}

func tooMany(wait time.Duration) error {
	secs := int(wait.Seconds() + 0.999)
	if secs < 1 {
		secs = 1
	}
	e := *ErrTooManyAttempts
	e.RetryAfter = secs
	return &e
}

// Login checks credentials and opens a session. It returns the session
// token (to be set as a cookie, never logged) and the account. A wrong
// email and a wrong password get the same answer, in about the same time.
func (s *Service) Login(ctx context.Context, email, password, ip, userAgent string) (string, Account, error) {
	now := s.now()
	if blocked, wait := s.throttledIP(ip, now); blocked {
		return "", Account{}, tooMany(wait)
	}
	key := strings.ToLower(strings.TrimSpace(email))
	n, oldest, err := store.LoginFailuresSince(ctx, s.db.Pool, key, now.Add(-s.cfg.FailureWindow))
	if err != nil {
		return "", Account{}, err
	}
	if n >= s.cfg.AccountFailures {
		return "", Account{}, tooMany(oldest.Add(s.cfg.FailureWindow).Sub(now))
	}
	acct, hash, err := store.AccountByEmail(ctx, s.db.Pool, key)
	ok := false
	switch {
	case errors.Is(err, store.ErrNotFound):
		VerifyPassword(dummyHash, password)
	case err != nil:
		return "", Account{}, err
	default:
		ok = VerifyPassword(hash, password)
	}
	if !ok {
		s.noteIPFailure(ip, now)
		if err := store.RecordLoginFailure(ctx, s.db.Pool, key, now); err != nil {
			return "", Account{}, err
		}
		return "", Account{}, ErrBadCredentials
	}
	if acct.DisabledAt != nil {
		return "", Account{}, ErrAccountDisabled
	}
	token := newToken()
	err = store.InsertSession(ctx, s.db.Pool, store.Session{
		TokenHash: hashToken(token), AccountID: acct.ID, CreatedAt: now,
		ExpiresAt: now.Add(s.cfg.SessionMax), IP: ip, UserAgent: truncate(userAgent, 300),
	})
	if err != nil {
		return "", Account{}, err
	}
	return token, acct, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// touchEvery limits last_seen_at writes to one per session per minute.
const touchEvery = time.Minute

// Authenticate returns the account behind a session token, if the session
// is live (not revoked, not idle too long, not past its absolute expiry).
func (s *Service) Authenticate(ctx context.Context, token string) (Account, store.Session, error) {
	if token == "" || len(token) > 100 {
		return Account{}, store.Session{}, ErrNoSession
	}
	th := hashToken(token)
	sess, acct, err := store.SessionWithAccount(ctx, s.db.Pool, th)
	if errors.Is(err, store.ErrNotFound) {
		return Account{}, store.Session{}, ErrNoSession
	}
	if err != nil {
		return Account{}, store.Session{}, err
	}
	now := s.now()
	if sess.RevokedAt != nil || !now.Before(sess.ExpiresAt) || now.Sub(sess.LastSeenAt) > s.cfg.SessionIdle || acct.DisabledAt != nil {
		return Account{}, store.Session{}, ErrNoSession
	}
	if now.Sub(sess.LastSeenAt) > touchEvery {
		if err := store.TouchSession(ctx, s.db.Pool, th, now); err != nil {
			return Account{}, store.Session{}, err
		}
	}
	return acct, sess, nil
}

// Logout revokes the session of token.
func (s *Service) Logout(ctx context.Context, token string) error {
	if err := store.RevokeSession(ctx, s.db.Pool, hashToken(token), s.now()); err != nil {
		return fmt.Errorf("auth: logout: %w", err)
	}
	return nil
}

// Tidy deletes login failures older than the window; run it periodically.
func (s *Service) Tidy(ctx context.Context) error {
	return store.PruneLoginFailures(ctx, s.db.Pool, s.now().Add(-s.cfg.FailureWindow))
}
