package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Account is a row of accounts (without secrets).
type Account struct {
	ID          string     `db:"id"`
	Email       string     `db:"email"`
	Name        string     `db:"name"`
	Role        string     `db:"role"`
	Language    string     `db:"language"`
	Phone       string     `db:"phone"`
	TOTPEnabled bool       `db:"totp_enabled"`
	DisabledAt  *time.Time `db:"disabled_at"`
	CreatedAt   time.Time  `db:"created_at"`
}

const accountColumns = `id::text, email, name, role, language, phone, totp_enabled, disabled_at, created_at`

// AccountsConstraintEmail is the unique constraint on accounts.email.
const AccountsConstraintEmail = "accounts_email_key"

// InsertAccount creates an account and returns it.
func InsertAccount(ctx context.Context, q Q, email, name, role, passwordHash, language string) (Account, error) {
	rows, err := q.Query(ctx, `INSERT INTO accounts (email, name, role, password_hash, language)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+accountColumns, email, name, role, passwordHash, language)
	if err != nil {
		return Account{}, fmt.Errorf("store: insert account: %w", err)
	}
	a, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Account])
	if err != nil {
		return Account{}, fmt.Errorf("store: insert account: %w", err)
	}
	return a, nil
}

// AccountByID returns an account.
func AccountByID(ctx context.Context, q Q, id string) (Account, error) {
	if !ValidID(id) {
		return Account{}, ErrNotFound.With("account not found")
	}
	rows, err := q.Query(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id = $1 AND erased_at IS NULL`, id)
	if err != nil {
		return Account{}, fmt.Errorf("store: account: %w", err)
	}
	a, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Account])
	return a, notFound(err, "account")
}

// AccountByEmail returns an account and its password hash.
func AccountByEmail(ctx context.Context, q Q, email string) (Account, string, error) {
	var hash string
	var a Account
	err := q.QueryRow(ctx, `SELECT `+accountColumns+`, password_hash FROM accounts WHERE email = $1 AND erased_at IS NULL`, email).
		Scan(&a.ID, &a.Email, &a.Name, &a.Role, &a.Language, &a.Phone, &a.TOTPEnabled, &a.DisabledAt, &a.CreatedAt, &hash)
	return a, hash, notFound(err, "account")
}

// SetPassword replaces an account's password hash.
func SetPassword(ctx context.Context, q Q, id, hash string) error {
	_, err := q.Exec(ctx, `UPDATE accounts SET password_hash = $2 WHERE id = $1`, id, hash)
	return err
}

// RecordLoginFailure notes a failed login for email.
func RecordLoginFailure(ctx context.Context, q Q, email string, at time.Time) error {
	_, err := q.Exec(ctx, `INSERT INTO login_failures (email, at) VALUES ($1, $2)`, email, at)
	return err
}

// LoginFailuresSince counts failed logins for email since t, and returns
// the oldest one in that window.
func LoginFailuresSince(ctx context.Context, q Q, email string, t time.Time) (int, time.Time, error) {
	var n int
	var oldest *time.Time
	err := q.QueryRow(ctx, `SELECT count(*), min(at) FROM login_failures WHERE email = $1 AND at > $2`, email, t).Scan(&n, &oldest)
	if oldest == nil {
		return n, time.Time{}, err
	}
	return n, *oldest, err
}

// PruneLoginFailures deletes failures older than t.
func PruneLoginFailures(ctx context.Context, q Q, t time.Time) error {
	_, err := q.Exec(ctx, `DELETE FROM login_failures WHERE at < $1`, t)
	return err
}

// Session is a row of sessions.
type Session struct {
	TokenHash  []byte     `db:"token_hash"`
	AccountID  string     `db:"account_id"`
	CreatedAt  time.Time  `db:"created_at"`
	LastSeenAt time.Time  `db:"last_seen_at"`
	ExpiresAt  time.Time  `db:"expires_at"`
	RevokedAt  *time.Time `db:"revoked_at"`
	MFAAt      *time.Time `db:"mfa_at"`
	ReauthAt   *time.Time `db:"reauth_at"`
	IP         string     `db:"ip"`
	UserAgent  string     `db:"user_agent"`
}

// InsertSession stores a new session.
func InsertSession(ctx context.Context, q Q, s Session) error {
	_, err := q.Exec(ctx, `INSERT INTO sessions (token_hash, account_id, created_at, last_seen_at, expires_at, ip, user_agent)
		VALUES ($1, $2, $3, $3, $4, $5, $6)`, s.TokenHash, s.AccountID, s.CreatedAt, s.ExpiresAt, s.IP, s.UserAgent)
	if err != nil {
		return fmt.Errorf("store: insert session: %w", err)
	}
	return nil
}

// SessionWithAccount returns a live session and its account.
func SessionWithAccount(ctx context.Context, q Q, tokenHash []byte) (Session, Account, error) {
	var s Session
	var a Account
	err := q.QueryRow(ctx, `SELECT s.token_hash, s.account_id::text, s.created_at, s.last_seen_at, s.expires_at, s.revoked_at, s.mfa_at, s.reauth_at, s.ip, s.user_agent,
			a.id::text, a.email, a.name, a.role, a.language, a.phone, a.totp_enabled, a.disabled_at, a.created_at
		FROM sessions s JOIN accounts a ON a.id = s.account_id
		WHERE s.token_hash = $1 AND a.erased_at IS NULL`, tokenHash).
		Scan(&s.TokenHash, &s.AccountID, &s.CreatedAt, &s.LastSeenAt, &s.ExpiresAt, &s.RevokedAt, &s.MFAAt, &s.ReauthAt, &s.IP, &s.UserAgent,
			&a.ID, &a.Email, &a.Name, &a.Role, &a.Language, &a.Phone, &a.TOTPEnabled, &a.DisabledAt, &a.CreatedAt)
	return s, a, notFound(err, "session")
}

// TouchSession records activity on a session.
func TouchSession(ctx context.Context, q Q, tokenHash []byte, at time.Time) error {
	_, err := q.Exec(ctx, `UPDATE sessions SET last_seen_at = $2 WHERE token_hash = $1`, tokenHash, at)
	return err
}

// RevokeSession ends a session now.
func RevokeSession(ctx context.Context, q Q, tokenHash []byte, at time.Time) error {
	_, err := q.Exec(ctx, `UPDATE sessions SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL`, tokenHash, at)
	return err
}
