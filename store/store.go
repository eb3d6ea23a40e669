// Package store holds all state in PostgreSQL through pgx/v5: the pool,
// the embedded migrations, and the queries, one file per domain
// (accounts.go, appointments.go, ...). It imports no domain package.
//
// Conventions: every query function takes ctx first and a Q (a pool or a
// transaction) second, so that callers can compose several writes in one
// transaction with DB.Tx. Rows are collected with pgx.CollectRows and
// pgx.RowToStructByName. A missing row is ErrNotFound, never nil, nil.
// Invariants the database can keep are constraints in the migrations.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"teleconsult/problem"
)

// ErrNotFound is returned when a row does not exist (or is not the caller's).
var ErrNotFound = problem.ErrNotFound

// Q is what a query needs: satisfied by *pgxpool.Pool and pgx.Tx.
type Q interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// DB is the connection pool to the service's database.
type DB struct {
	Pool *pgxpool.Pool
}

// Open connects to url, checks the server answers, and returns the pool.
// It does not migrate: call Migrate.
func Open(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store: parse database url: %w", err)
	}
	// Why: a web node on 2 cores saturates well before 20 connections; more
	// only adds contention in PostgreSQL.
	if cfg.MaxConns < 20 {
		cfg.MaxConns = 20
	}
	cfg.MaxConnIdleTime = 5 * time.Minute
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open pool: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: ping: %w", err)
	}
	return &DB{Pool: pool}, nil
}

// Close closes the pool.
func (db *DB) Close() { db.Pool.Close() }

// Ping reports whether the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.Pool.Ping(ctx) }

// Tx runs fn in a transaction, committed when fn returns nil.
func (db *DB) Tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, db.Pool, fn)
}

// notFound turns pgx.ErrNoRows into ErrNotFound, keeping other errors.
func notFound(err error, what string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound.With(what + " not found")
	}
	return err
}

// NotFound turns pgx.ErrNoRows into ErrNotFound with "<what> not found".
func NotFound(err error, what string) error { return notFound(err, what) }

// ConstraintViolated reports whether err is a PostgreSQL integrity error
// (unique, exclusion, foreign key or check) on the named constraint.
func ConstraintViolated(err error, constraint string) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	return pe.ConstraintName == constraint
}

// UniqueViolation reports whether err is a unique violation (23505),
// on any constraint.
func UniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}
