package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/problem"
	"teleconsult/store"
	"teleconsult/vault"
)

// TOTP parameters (RFC 6238 defaults, what every authenticator app reads).
const (
	totpPeriod = 30
	totpDigits = 6
	// totpSkew accepts the previous and next code: phone clocks drift.
	totpSkew = 1
	// recoveryCodes is how many single-use recovery codes are issued.
	recoveryCodes = 10
)

// Two-factor problems.
var (
	ErrMFARequired     = problem.New(problem.Unauthorized, "mfa_required", "please enter the code from your authenticator app")
	ErrMFASetupNeeded  = problem.New(problem.Unauthorized, "mfa_setup_required", "your account needs two-factor login: please set it up first")
	ErrBadCode         = problem.New(problem.Unauthorized, "bad_code", "this code is not valid")
	ErrMFANotStarted   = problem.New(problem.Conflict, "mfa_not_started", "start the two-factor set-up first")
	ErrMFAAlreadyOn    = problem.New(problem.Conflict, "mfa_enabled", "two-factor login is already on")
	ErrMFAMandatory    = problem.New(problem.Forbidden, "mfa_mandatory", "two-factor login cannot be turned off for this account")
	ErrReauthRequired  = problem.New(problem.Unauthorized, "reauth_required", "please enter your password again to do this")
	errNoSecretPending = errors.New("no pending secret")
)

// totpCode computes the code for a time step (RFC 4226 dynamic truncation).
func totpCode(secret []byte, step int64) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(step))
	m := hmac.New(sha1.New, secret)
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%0*d", totpDigits, v%1_000_000)
}

// TOTPCode returns the code an authenticator shows at t (for tests and
// for the demo).
func TOTPCode(secret []byte, t time.Time) string { return totpCode(secret, t.Unix()/totpPeriod) }

// matchTOTP returns the time step code matches around now, or -1.
func matchTOTP(secret []byte, code string, now time.Time) int64 {
	code = strings.ReplaceAll(strings.TrimSpace(code), " ", "")
	if len(code) != totpDigits {
		return -1
	}
	step := now.Unix() / totpPeriod
	for d := int64(-totpSkew); d <= totpSkew; d++ {
		if hmac.Equal([]byte(totpCode(secret, step+d)), []byte(code)) {
			return step + d
		}
	}
	return -1
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func totpAAD(accountID string) vault.AAD {
	return vault.AAD{Table: "accounts", Column: "totp_secret", RowID: accountID}
}

// MFAConfig says which roles must use two-factor login.
type MFAConfig struct {
	Vault    *vault.Vault
	Required map[string]bool // role -> required
	Issuer   string          // shown in authenticator apps
}

// DefaultMFARoles are the roles that must use two-factor login.
var DefaultMFARoles = map[string]bool{RolePractitioner: true, RolePharmacist: true, RoleAdmin: true}

// SetMFA configures two-factor login.
func (s *Service) SetMFA(c MFAConfig) {
	if c.Issuer == "" {
		c.Issuer = "Teleconsult"
	}
	s.mfa = c
}

// MFARequired reports whether acct must give a second factor.
func (s *Service) MFARequired(acct *Account) bool {
	return acct.TOTPEnabled || s.mfa.Required[acct.Role]
}

// SessionComplete reports whether a session may use the whole service:
// the second factor was given when the account needs one.
func (s *Service) SessionComplete(acct *Account, sess *store.Session) error {
	if !s.MFARequired(acct) || sess.MFAAt != nil {
		return nil
	}
	if !acct.TOTPEnabled {
		return ErrMFASetupNeeded
	}
	return ErrMFARequired
}

// BeginTOTP creates a new secret for acct (not active until ConfirmTOTP)
// and returns it with the otpauth:// URL for authenticator apps.
func (s *Service) BeginTOTP(ctx context.Context, acct *Account) (secretB32, otpauthURL string, err error) {
	if acct.TOTPEnabled {
		return "", "", ErrMFAAlreadyOn
	}
	secret := make([]byte, 20)
	rand.Read(secret)
	err = s.db.Tx(ctx, func(tx pgx.Tx) error {
		key, err := s.mfa.Vault.AccountKey(ctx, tx, acct.ID)
		if err != nil {
			return err
		}
		sealed, err := s.mfa.Vault.Seal(ctx, tx, key, totpAAD(acct.ID), secret)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE accounts SET totp_secret = $2 WHERE id = $1 AND NOT totp_enabled`, acct.ID, sealed)
		return err
	})
	if err != nil {
		return "", "", err
	}
	secretB32 = b32.EncodeToString(secret)
	label := url.PathEscape(s.mfa.Issuer + ":" + acct.Email)
	q := url.Values{"secret": {secretB32}, "issuer": {s.mfa.Issuer}, "digits": {"6"}, "period": {"30"}}
	return secretB32, "otpauth://totp/" + label + "?" + q.Encode(), nil
}

func (s *Service) totpSecret(ctx context.Context, q store.Q, accountID string) ([]byte, int64, error) {
	var sealed []byte
	var last int64
	if err := q.QueryRow(ctx, `SELECT totp_secret, totp_last_step FROM accounts WHERE id = $1 FOR UPDATE`, accountID).Scan(&sealed, &last); err != nil {
		return nil, 0, err
	}
	if sealed == nil {
		return nil, 0, errNoSecretPending
	}
	secret, err := s.mfa.Vault.Open(ctx, q, totpAAD(accountID), sealed)
	return secret, last, err
}

// ConfirmTOTP turns two-factor login on once the user proves their app
// shows the right code; it returns the recovery codes (shown once) and
// marks the current session as having given the second factor.
func (s *Service) ConfirmTOTP(ctx context.Context, acct *Account, sessionToken, code string) ([]string, error) {
	var codes []string
	err := s.db.Tx(ctx, func(tx pgx.Tx) error {
		secret, _, err := s.totpSecret(ctx, tx, acct.ID)
		if errors.Is(err, errNoSecretPending) {
			return ErrMFANotStarted
		}
		if err != nil {
			return err
		}
		step := matchTOTP(secret, code, s.now())
		if step < 0 {
			return ErrBadCode
		}
		tag, err := tx.Exec(ctx, `UPDATE accounts SET totp_enabled = true, totp_last_step = $2 WHERE id = $1 AND NOT totp_enabled`, acct.ID, step)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrMFAAlreadyOn
		}
		if _, err := tx.Exec(ctx, `DELETE FROM recovery_codes WHERE account_id = $1`, acct.ID); err != nil {
			return err
		}
		for i := 0; i < recoveryCodes; i++ {
			c := newRecoveryCode()
			if _, err := tx.Exec(ctx, `INSERT INTO recovery_codes (account_id, code_hash) VALUES ($1, $2)`, acct.ID, hashToken(normalizeRecovery(c))); err != nil {
				return err
			}
			codes = append(codes, c)
		}
		_, err = tx.Exec(ctx, `UPDATE sessions SET mfa_at = $2 WHERE token_hash = $1`, hashToken(sessionToken), s.now())
		return err
	})
	return codes, err
}

func newRecoveryCode() string {
	b := make([]byte, 5)
	rand.Read(b)
	s := strings.ToLower(b32.EncodeToString(b)) // 8 characters
	return s[:4] + "-" + s[4:]
}

func normalizeRecovery(c string) string {
	return strings.ToLower(strings.NewReplacer("-", "", " ", "").Replace(strings.TrimSpace(c)))
}

// VerifySecondFactor checks a TOTP code (or, failing that, a recovery
// code) for the session's account and marks the session complete. Failed
// attempts count towards the login throttle.
func (s *Service) VerifySecondFactor(ctx context.Context, acct *Account, sessionToken, code, ip string) error {
	now := s.now()
	n, oldest, err := store.LoginFailuresSince(ctx, s.db.Pool, acct.Email, now.Add(-s.cfg.FailureWindow))
	if err != nil {
		return err
	}
	if n >= s.cfg.AccountFailures {
		return tooMany(oldest.Add(s.cfg.FailureWindow).Sub(now))
	}
	ok := false
	err = s.db.Tx(ctx, func(tx pgx.Tx) error {
		secret, last, err := s.totpSecret(ctx, tx, acct.ID)
		if errors.Is(err, errNoSecretPending) {
			return ErrMFASetupNeeded
		}
		if err != nil {
			return err
		}
		if step := matchTOTP(secret, code, now); step > last {
			ok = true
			_, err = tx.Exec(ctx, `UPDATE accounts SET totp_last_step = $2 WHERE id = $1`, acct.ID, step)
		} else if len(normalizeRecovery(code)) == 8 {
			tag, e := tx.Exec(ctx, `UPDATE recovery_codes SET used_at = $3 WHERE account_id = $1 AND code_hash = $2 AND used_at IS NULL`,
				acct.ID, hashToken(normalizeRecovery(code)), now)
			ok, err = e == nil && tag.RowsAffected() == 1, e
		}
		if err != nil || !ok {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE sessions SET mfa_at = $2 WHERE token_hash = $1`, hashToken(sessionToken), now)
		return err
	})
	if err != nil {
		return err
	}
	if !ok {
		s.noteIPFailure(ip, now)
		if err := store.RecordLoginFailure(ctx, s.db.Pool, acct.Email, now); err != nil {
			return err
		}
		return ErrBadCode
	}
	return nil
}

// DisableTOTP turns two-factor login off (patients only: it is mandatory
// for the other roles).
func (s *Service) DisableTOTP(ctx context.Context, acct *Account) error {
	if s.mfa.Required[acct.Role] {
		return ErrMFAMandatory
	}
	_, err := s.db.Pool.Exec(ctx, `UPDATE accounts SET totp_enabled = false, totp_secret = NULL WHERE id = $1`, acct.ID)
	if err != nil {
		return err
	}
	_, err = s.db.Pool.Exec(ctx, `DELETE FROM recovery_codes WHERE account_id = $1`, acct.ID)
	return err
}

// reauthWindow is how long a password re-entry unlocks sensitive actions.
const reauthWindow = 10 * time.Minute

// Reauthenticate checks the password again and unlocks sensitive actions
// (signing keys, API tokens, erasure) for a few minutes.
func (s *Service) Reauthenticate(ctx context.Context, acct *Account, sessionToken, password, ip string) error {
	_, hash, err := store.AccountByEmail(ctx, s.db.Pool, acct.Email)
	if err != nil {
		return err
	}
	now := s.now()
	if !VerifyPassword(hash, password) {
		s.noteIPFailure(ip, now)
		if err := store.RecordLoginFailure(ctx, s.db.Pool, acct.Email, now); err != nil {
			return err
		}
		return ErrBadCredentials
	}
	_, err = s.db.Pool.Exec(ctx, `UPDATE sessions SET reauth_at = $2 WHERE token_hash = $1`, hashToken(sessionToken), now)
	return err
}

// RecentlyAuthenticated reports whether the session entered its password
// (at login or again) within the last few minutes.
func (s *Service) RecentlyAuthenticated(sess *store.Session) error {
	last := sess.CreatedAt
	if sess.ReauthAt != nil && sess.ReauthAt.After(last) {
		last = *sess.ReauthAt
	}
	if s.now().Sub(last) > reauthWindow {
		return ErrReauthRequired
	}
	return nil
}

// SessionID is the public name of a session: a prefix of its token's
// hash, enough to tell sessions apart, useless to log in with.
func SessionID(tokenHash []byte) string { return fmt.Sprintf("%x", tokenHash[:8]) }

// SessionInfo describes one of the caller's sessions.
type SessionInfo struct {
	ID         string    `json:"id"`
	CreatedAt  time.Time `json:"created_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	IP         string    `json:"ip"`
	UserAgent  string    `json:"user_agent"`
	Current    bool      `json:"current"`
}

// Sessions lists the live sessions of acct.
func (s *Service) Sessions(ctx context.Context, acct *Account, currentToken string) ([]SessionInfo, error) {
	rows, err := s.db.Pool.Query(ctx, `SELECT token_hash, created_at, last_seen_at, ip, user_agent FROM sessions
		WHERE account_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND last_seen_at > $3 ORDER BY last_seen_at DESC`,
		acct.ID, s.now(), s.now().Add(-s.cfg.SessionIdle))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cur := hashToken(currentToken)
	var out []SessionInfo
	for rows.Next() {
		var th []byte
		var si SessionInfo
		if err := rows.Scan(&th, &si.CreatedAt, &si.LastSeenAt, &si.IP, &si.UserAgent); err != nil {
			return nil, err
		}
		si.ID = SessionID(th)
		si.Current = hmac.Equal(th, cur)
		out = append(out, si)
	}
	return out, rows.Err()
}

// RevokeSessionByID ends one of acct's sessions; another account's
// session id is not found.
func (s *Service) RevokeSessionByID(ctx context.Context, acct *Account, id string) error {
	if len(id) != 16 {
		return store.ErrNotFound.With("session not found")
	}
	tag, err := s.db.Pool.Exec(ctx, `UPDATE sessions SET revoked_at = $3 WHERE account_id = $1 AND encode(substring(token_hash from 1 for 8), 'hex') = $2 AND revoked_at IS NULL`,
		acct.ID, strings.ToLower(id), s.now())
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound.With("session not found")
	}
	return nil
}

// ResetTokenTTL is how long a password reset link works.
const ResetTokenTTL = time.Hour

// RequestPasswordReset emails a single-use reset link when email belongs
// to an account, and does nothing otherwise (the caller answers the same
// either way, so accounts cannot be discovered).
func (s *Service) RequestPasswordReset(ctx context.Context, email string) error {
	email = strings.ToLower(strings.TrimSpace(email))
	acct, _, err := store.AccountByEmail(ctx, s.db.Pool, email)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	token := newToken()
	return s.db.Tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO password_resets (token_hash, account_id, expires_at) VALUES ($1, $2, $3)`,
			hashToken(token), acct.ID, s.now().Add(ResetTokenTTL)); err != nil {
			return err
		}
		return store.Enqueue(ctx, tx, store.OutboxEvent{Kind: "password.reset", RecipientID: acct.ID, Data: map[string]string{"token": token}})
	})
}

// ErrResetInvalid is the answer to a reset token that is unknown, used or
// expired.
var ErrResetInvalid = problem.New(problem.Invalid, "reset_invalid", "this reset link is not valid any more; please ask for a new one")

// ResetPassword sets a new password with a reset token, once, and ends
// every session of the account.
func (s *Service) ResetPassword(ctx context.Context, token, password string) error {
	if err := CheckPassword(password); err != nil {
		return err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	now := s.now()
	return s.db.Tx(ctx, func(tx pgx.Tx) error {
		var accountID string
		err := tx.QueryRow(ctx, `UPDATE password_resets SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING account_id::text`,
			hashToken(token), now).Scan(&accountID)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrResetInvalid
		}
		if err != nil {
			return err
		}
		if err := store.SetPassword(ctx, tx, accountID, hash); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE sessions SET revoked_at = $2 WHERE account_id = $1 AND revoked_at IS NULL`, accountID, now)
		return err
	})
}

// ChangePassword replaces the caller's password after checking the
// current one, and ends their other sessions.
func (s *Service) ChangePassword(ctx context.Context, acct *Account, sessionToken, current, next, ip string) error {
	if err := s.Reauthenticate(ctx, acct, sessionToken, current, ip); err != nil {
		return err
	}
	if err := CheckPassword(next); err != nil {
		return err
	}
	hash, err := HashPassword(next)
	if err != nil {
		return err
	}
	return s.db.Tx(ctx, func(tx pgx.Tx) error {
		if err := store.SetPassword(ctx, tx, acct.ID, hash); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = $3 WHERE account_id = $1 AND token_hash <> $2 AND revoked_at IS NULL`,
			acct.ID, hashToken(sessionToken), s.now())
		return err
	})
}
