package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/problem"
	"teleconsult/store"
)

// API token scopes: what a third-party system may do for one practice.
const (
	ScopeAgendaRead        = "agenda:read"        // practitioner, schedule, slots, appointments
	ScopeAppointmentsWrite = "appointments:write" // change an appointment's status
	ScopePrescriptionsRead = "prescriptions:read" // medication requests
)

// Scopes lists every scope.
var Scopes = []string{ScopeAgendaRead, ScopeAppointmentsWrite, ScopePrescriptionsRead}

// apiTokenPrefix marks our tokens, so a leaked one is recognisable (and
// secret scanners can find it).
const apiTokenPrefix = "tcapi_"

// MaxTokenLifetime bounds how long an API token may live.
const MaxTokenLifetime = 366 * 24 * time.Hour

// API token problems.
var (
	ErrBadScope     = problem.Newf(problem.Invalid, "bad_scope", "scopes must be among %s", strings.Join(Scopes, ", "))
	ErrBadLifetime  = problem.New(problem.Invalid, "bad_lifetime", "expires_in_days must be between 1 and 366")
	ErrTokenInvalid = problem.New(problem.Unauthorized, "token_invalid", "this API token is not valid, expired or revoked")
	ErrScope        = problem.New(problem.Forbidden, "insufficient_scope", "this API token does not have the scope this needs")
)

// APIToken describes a token (never its secret).
type APIToken struct {
	ID         string     `json:"id" db:"id"`
	OwnerID    string     `json:"-" db:"owner_id"`
	Name       string     `json:"name" db:"name"`
	Scopes     []string   `json:"scopes" db:"scopes"`
	CreatedAt  time.Time  `json:"created_at" db:"created_at"`
	ExpiresAt  time.Time  `json:"expires_at" db:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty" db:"revoked_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty" db:"last_used_at"`
}

// Has reports whether the token carries scope.
func (t *APIToken) Has(scope string) bool { return slices.Contains(t.Scopes, scope) }

const tokenColumns = `id::text, owner_id::text, name, scopes, created_at, expires_at, revoked_at, last_used_at`

// CreateAPIToken makes a token for owner's practice. The token text is
// returned once and stored only as a hash.
func (s *Service) CreateAPIToken(ctx context.Context, owner *Account, name string, scopes []string, lifetime time.Duration) (string, APIToken, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return "", APIToken{}, problem.New(problem.Invalid, "invalid_name", "give the token a name (at most 100 characters), e.g. the software that will use it")
	}
	if len(scopes) == 0 {
		return "", APIToken{}, ErrBadScope
	}
	for _, sc := range scopes {
		if !slices.Contains(Scopes, sc) {
			return "", APIToken{}, ErrBadScope
		}
	}
	if lifetime < 24*time.Hour || lifetime > MaxTokenLifetime {
		return "", APIToken{}, ErrBadLifetime
	}
	token := apiTokenPrefix + newToken()
	rows, err := s.db.Pool.Query(ctx, `INSERT INTO api_tokens (owner_id, name, token_hash, scopes, expires_at)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+tokenColumns, owner.ID, name, hashToken(token), slices.Compact(slices.Sorted(slices.Values(scopes))), s.now().Add(lifetime))
	if err != nil {
		return "", APIToken{}, fmt.Errorf("auth: create api token: %w", err)
	}
	t, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[APIToken])
	return token, t, err
}

// APITokens lists owner's tokens.
func (s *Service) APITokens(ctx context.Context, owner *Account) ([]APIToken, error) {
	rows, err := s.db.Pool.Query(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE owner_id = $1 ORDER BY created_at DESC`, owner.ID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[APIToken])
}

// RevokeAPIToken ends one of owner's tokens at once.
func (s *Service) RevokeAPIToken(ctx context.Context, owner *Account, id string) error {
	if !store.ValidID(id) {
		return store.ErrNotFound.With("token not found")
	}
	tag, err := s.db.Pool.Exec(ctx, `UPDATE api_tokens SET revoked_at = coalesce(revoked_at, $3) WHERE id = $1 AND owner_id = $2`, id, owner.ID, s.now())
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound.With("token not found")
	}
	return nil
}

// AuthenticateAPIToken returns the owner and the token behind a bearer
// token, if it is live.
func (s *Service) AuthenticateAPIToken(ctx context.Context, token string) (Account, APIToken, error) {
	if !strings.HasPrefix(token, apiTokenPrefix) || len(token) > 100 {
		return Account{}, APIToken{}, ErrTokenInvalid
	}
	rows, err := s.db.Pool.Query(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE token_hash = $1`, hashToken(token))
	if err != nil {
		return Account{}, APIToken{}, err
	}
	t, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[APIToken])
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, APIToken{}, ErrTokenInvalid
	}
	if err != nil {
		return Account{}, APIToken{}, err
	}
	now := s.now()
	if t.RevokedAt != nil || !now.Before(t.ExpiresAt) {
		return Account{}, APIToken{}, ErrTokenInvalid
	}
	acct, err := store.AccountByID(ctx, s.db.Pool, t.OwnerID)
	if err != nil || acct.DisabledAt != nil {
		return Account{}, APIToken{}, ErrTokenInvalid
	}
	if t.LastUsedAt == nil || now.Sub(*t.LastUsedAt) > touchEvery {
		_, _ = s.db.Pool.Exec(ctx, `UPDATE api_tokens SET last_used_at = $2 WHERE id = $1`, t.ID, now)
	}
	return acct, t, nil
}
