package store

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Practitioner is a practitioner's public profile and booking settings.
// Name comes from the account.
type Practitioner struct {
	AccountID           string     `db:"account_id" json:"id"`
	Name                string     `db:"name" json:"name"`
	Specialty           string     `db:"specialty" json:"specialty"`
	RPPS                string     `db:"rpps" json:"rpps"`
	Address             string     `db:"address" json:"address"`
	City                string     `db:"city" json:"city"`
	Postcode            string     `db:"postcode" json:"postcode"`
	Latitude            *float64   `db:"latitude" json:"latitude"`
	Longitude           *float64   `db:"longitude" json:"longitude"`
	Languages           []string   `db:"languages" json:"languages"`
	PhotoURL            string     `db:"photo_url" json:"photo_url"`
	Presentation        string     `db:"presentation" json:"presentation"`
	Phone               string     `db:"phone" json:"phone"`
	TimeZone            string     `db:"time_zone" json:"time_zone"`
	HorizonDays         int        `db:"horizon_days" json:"horizon_days"`
	MinNoticeMinutes    int        `db:"min_notice_minutes" json:"min_notice_minutes"`
	CancelCutoffMinutes int        `db:"cancel_cutoff_minutes" json:"cancel_cutoff_minutes"`
	NoShowLimit         int        `db:"no_show_limit" json:"no_show_limit"`
	NextFreeAt          *time.Time `db:"next_free_at" json:"next_free_at"`
	NextVideoFreeAt     *time.Time `db:"next_video_free_at" json:"next_video_free_at,omitempty"`
	OffersVideo         bool       `db:"offers_video" json:"offers_video"`
}

const practitionerColumns = `p.account_id, a.name, p.specialty, p.rpps, p.address, p.city, p.postcode,
	p.latitude, p.longitude, p.languages, p.photo_url, p.presentation, p.phone, p.time_zone,
	p.horizon_days, p.min_notice_minutes, p.cancel_cutoff_minutes, p.no_show_limit,
	p.next_free_at, p.next_video_free_at, p.offers_video`

// UpsertPractitioner creates or updates the profile of p.AccountID (whose
// account must exist with the practitioner role). Name is ignored: it
// belongs to the account.
func UpsertPractitioner(ctx context.Context, q Q, p Practitioner) error {
	if len(p.Languages) == 0 {
		p.Languages = []string{"fr"}
	}
	_, err := q.Exec(ctx, `INSERT INTO practitioners (account_id, specialty, rpps, address, city, postcode,
			latitude, longitude, languages, photo_url, presentation, phone, time_zone,
			horizon_days, min_notice_minutes, cancel_cutoff_minutes, no_show_limit)
		SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17
		FROM accounts WHERE id = $1 AND role = 'practitioner'
		ON CONFLICT (account_id) DO UPDATE SET specialty = $2, rpps = $3, address = $4, city = $5,
			postcode = $6, latitude = $7, longitude = $8, languages = $9, photo_url = $10,
			presentation = $11, phone = $12, time_zone = $13, horizon_days = $14,
			min_notice_minutes = $15, cancel_cutoff_minutes = $16, no_show_limit = $17, updated_at = now()`,
		p.AccountID, p.Specialty, p.RPPS, p.Address, p.City, p.Postcode, p.Latitude, p.Longitude,
		p.Languages, p.PhotoURL, p.Presentation, p.Phone, p.TimeZone, p.HorizonDays,
		p.MinNoticeMinutes, p.CancelCutoffMinutes, p.NoShowLimit)
	if err != nil {
		return fmt.Errorf("store: upsert practitioner: %w", err)
	}
	return nil
}

// PractitionerByID returns a practitioner's profile.
func PractitionerByID(ctx context.Context, q Q, id string) (Practitioner, error) {
	if !ValidID(id) {
		return Practitioner{}, ErrNotFound.With("practitioner not found")
	}
	rows, err := q.Query(ctx, `SELECT `+practitionerColumns+` FROM practitioners p JOIN accounts a ON a.id = p.account_id
		WHERE p.account_id = $1 AND a.disabled_at IS NULL`, id)
	if err != nil {
		return Practitioner{}, fmt.Errorf("store: practitioner: %w", err)
	}
	p, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Practitioner])
	if err != nil {
		return Practitioner{}, notFound(err, "practitioner")
	}
	return p, nil
}

// LockPractitioner takes the practitioner's row lock until the end of q's
// transaction. Every change of a practitioner's agenda takes it first, so
// that changes are serialised per practitioner and the precomputed next
// free slot is refreshed from a consistent view.
func LockPractitioner(ctx context.Context, q Q, id string) error {
	if !ValidID(id) {
		return ErrNotFound.With("practitioner not found")
	}
	var one int
	err := q.QueryRow(ctx, `SELECT 1 FROM practitioners WHERE account_id = $1 FOR NO KEY UPDATE`, id).Scan(&one)
	return notFound(err, "practitioner")
}

// ConsultationType is a kind of consultation a practitioner offers.
type ConsultationType struct {
	ID              string     `db:"id" json:"id"`
	PractitionerID  string     `db:"practitioner_id" json:"practitioner_id"`
	Name            string     `db:"name" json:"name"`
	Mode            string     `db:"mode" json:"mode"`
	DurationMinutes int        `db:"duration_minutes" json:"duration_minutes"`
	FeeCents        int        `db:"fee_cents" json:"fee_cents"`
	Currency        string     `db:"currency" json:"currency"`
	NewPatients     bool       `db:"new_patients" json:"new_patients"`
	Active          bool       `db:"active" json:"active"`
	NextFreeAt      *time.Time `db:"next_free_at" json:"next_free_at"`
}

const consultationTypeColumns = `id, practitioner_id, name, mode, duration_minutes, fee_cents, currency, new_patients, active, next_free_at`

// SaveConsultationType inserts c (when c.ID is empty) or updates it (only
// if it belongs to c.PractitionerID), and returns it as stored.
func SaveConsultationType(ctx context.Context, q Q, c ConsultationType) (ConsultationType, error) {
	if c.Currency == "" {
		c.Currency = "EUR"
	}
	var rows pgx.Rows
	var err error
	if c.ID == "" {
		rows, err = q.Query(ctx, `INSERT INTO consultation_types (practitioner_id, name, mode, duration_minutes, fee_cents, currency, new_patients, active)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING `+consultationTypeColumns,
			c.PractitionerID, c.Name, c.Mode, c.DurationMinutes, c.FeeCents, c.Currency, c.NewPatients, c.Active)
	} else {
		if !ValidID(c.ID) {
			return ConsultationType{}, ErrNotFound.With("consultation type not found")
		}
		rows, err = q.Query(ctx, `UPDATE consultation_types SET name = $3, mode = $4, duration_minutes = $5, fee_cents = $6,
			currency = $7, new_patients = $8, active = $9 WHERE id = $1 AND practitioner_id = $2 RETURNING `+consultationTypeColumns,
			c.ID, c.PractitionerID, c.Name, c.Mode, c.DurationMinutes, c.FeeCents, c.Currency, c.NewPatients, c.Active)
	}
	if err != nil {
		return ConsultationType{}, fmt.Errorf("store: save consultation type: %w", err)
	}
	got, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[ConsultationType])
	if err != nil {
		return ConsultationType{}, notFound(err, "consultation type")
	}
	return got, nil
}

// ConsultationTypes returns a practitioner's consultation types (active
// ones only unless all is set).
func ConsultationTypes(ctx context.Context, q Q, practitionerID string, all bool) ([]ConsultationType, error) {
	rows, err := q.Query(ctx, `SELECT `+consultationTypeColumns+` FROM consultation_types
		WHERE practitioner_id = $1 AND (active OR $2) ORDER BY mode DESC, duration_minutes, name`, practitionerID, all)
	if err != nil {
		return nil, fmt.Errorf("store: consultation types: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[ConsultationType])
}

// ConsultationTypeByID returns a consultation type.
func ConsultationTypeByID(ctx context.Context, q Q, id string) (ConsultationType, error) {
	if !ValidID(id) {
		return ConsultationType{}, ErrNotFound.With("consultation type not found")
	}
	rows, err := q.Query(ctx, `SELECT `+consultationTypeColumns+` FROM consultation_types WHERE id = $1`, id)
	if err != nil {
		return ConsultationType{}, fmt.Errorf("store: consultation type: %w", err)
	}
	c, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[ConsultationType])
	if err != nil {
		return ConsultationType{}, notFound(err, "consultation type")
	}
	return c, nil
}

// OpeningHours is one weekly range of opening for a consultation type,
// in the practitioner's local time. Weekday 0 is Sunday; Start and End
// are "HH:MM".
type OpeningHours struct {
	ConsultationTypeID string `db:"consultation_type_id" json:"consultation_type_id"`
	Weekday            int    `db:"weekday" json:"weekday"`
	Start              string `db:"start_time" json:"start"`
	End                string `db:"end_time" json:"end"`
}

// OpeningHoursOf returns all of a practitioner's opening hours.
func OpeningHoursOf(ctx context.Context, q Q, practitionerID string) ([]OpeningHours, error) {
	rows, err := q.Query(ctx, `SELECT consultation_type_id, weekday, to_char(start_time, 'HH24:MI') AS start_time,
		to_char(end_time, 'HH24:MI') AS end_time FROM opening_hours
		WHERE practitioner_id = $1 ORDER BY consultation_type_id, weekday, start_time`, practitionerID)
	if err != nil {
		return nil, fmt.Errorf("store: opening hours: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[OpeningHours])
}

// ReplaceOpeningHours replaces all of a practitioner's opening hours with
// hours (each for one of the practitioner's consultation types).
func ReplaceOpeningHours(ctx context.Context, q Q, practitionerID string, hours []OpeningHours) error {
	if _, err := q.Exec(ctx, `DELETE FROM opening_hours WHERE practitioner_id = $1`, practitionerID); err != nil {
		return fmt.Errorf("store: replace opening hours: %w", err)
	}
	for _, h := range hours {
		if !ValidID(h.ConsultationTypeID) {
			return ErrNotFound.With("consultation type not found")
		}
		tag, err := q.Exec(ctx, `INSERT INTO opening_hours (practitioner_id, consultation_type_id, weekday, start_time, end_time)
			SELECT $1, id, $3, $4::time, $5::time FROM consultation_types WHERE id = $2 AND practitioner_id = $1`,
			practitionerID, h.ConsultationTypeID, h.Weekday, h.Start, h.End)
		if err != nil {
			return fmt.Errorf("store: replace opening hours: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound.With("consultation type not found")
		}
	}
	return nil
}

// Absence is a time the practitioner is away.
type Absence struct {
	ID             string    `db:"id" json:"id"`
	PractitionerID string    `db:"practitioner_id" json:"-"`
	StartsAt       time.Time `db:"starts_at" json:"start"`
	EndsAt         time.Time `db:"ends_at" json:"end"`
}

// AddAbsence records an absence and returns its id.
func AddAbsence(ctx context.Context, q Q, practitionerID string, start, end time.Time) (string, error) {
	var id string
	err := q.QueryRow(ctx, `INSERT INTO absences (practitioner_id, starts_at, ends_at) VALUES ($1, $2, $3) RETURNING id`,
		practitionerID, start, end).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("store: add absence: %w", err)
	}
	return id, nil
}

// DeleteAbsence removes one of the practitioner's absences.
func DeleteAbsence(ctx context.Context, q Q, practitionerID, id string) error {
	if !ValidID(id) {
		return ErrNotFound.With("absence not found")
	}
	tag, err := q.Exec(ctx, `DELETE FROM absences WHERE id = $1 AND practitioner_id = $2`, id, practitionerID)
	if err != nil {
		return fmt.Errorf("store: delete absence: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound.With("absence not found")
	}
	return nil
}

// AbsencesOf returns the absences that end after since.
func AbsencesOf(ctx context.Context, q Q, practitionerID string, since time.Time) ([]Absence, error) {
	rows, err := q.Query(ctx, `SELECT id, practitioner_id, starts_at, ends_at FROM absences
		WHERE practitioner_id = $1 AND ends_at > $2 ORDER BY starts_at`, practitionerID, since)
	if err != nil {
		return nil, fmt.Errorf("store: absences: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[Absence])
}

// StalePractitioners returns up to limit practitioners whose precomputed
// next free slot is in the past of now plus their notice, or unknown
// although they have opening hours: the periodic refresh job's work list.
func StalePractitioners(ctx context.Context, q Q, now time.Time, limit int) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT account_id FROM practitioners p
		WHERE p.next_free_at < $1::timestamptz + interval '14 days' -- the longest notice; lets the index bound the scan
		  AND p.next_free_at < $1::timestamptz + make_interval(mins => p.min_notice_minutes)
		UNION
		SELECT account_id FROM practitioners p WHERE p.next_free_at IS NULL
		  AND p.updated_at < $1::timestamptz - interval '1 hour'
		  AND EXISTS (SELECT 1 FROM opening_hours o WHERE o.practitioner_id = p.account_id)
		LIMIT $2`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("store: stale practitioners: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// SetCalendarTokenHash stores (or, with nil, clears) the hash of the
// practitioner's calendar feed token.
func SetCalendarTokenHash(ctx context.Context, q Q, practitionerID string, hash []byte) error {
	_, err := q.Exec(ctx, `UPDATE practitioners SET calendar_token_hash = $2 WHERE account_id = $1`, practitionerID, hash)
	if err != nil {
		return fmt.Errorf("store: set calendar token: %w", err)
	}
	return nil
}

// PractitionerByCalendarTokenHash finds whose feed a token hash opens.
func PractitionerByCalendarTokenHash(ctx context.Context, q Q, hash []byte) (Practitioner, error) {
	rows, err := q.Query(ctx, `SELECT `+practitionerColumns+` FROM practitioners p JOIN accounts a ON a.id = p.account_id
		WHERE p.calendar_token_hash = $1 AND a.disabled_at IS NULL`, hash)
	if err != nil {
		return Practitioner{}, fmt.Errorf("store: practitioner by calendar token: %w", err)
	}
	p, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Practitioner])
	if err != nil {
		return Practitioner{}, notFound(err, "calendar")
	}
	return p, nil
}

// SearchFilter selects practitioners in the directory. Empty fields do
// not filter. Near filters by a bounding box first (an index) and then by
// exact great-circle distance.
type SearchFilter struct {
	Specialty string
	City      string
	Postcode  string
	Near      *GeoPoint
	RadiusKm  float64
	VideoOnly bool
	Language  string
	// ByDistance sorts by distance (needs Near) instead of next availability.
	ByDistance bool
	Limit      int
	Offset     int
}

// GeoPoint is a position in degrees.
type GeoPoint struct{ Lat, Lon float64 }

// SearchResult is one practitioner found, with its earliest free slot
// (of a video consultation type when the search is video only).
type SearchResult struct {
	ID                 string     `db:"account_id"`
	Name               string     `db:"name"`
	Specialty          string     `db:"specialty"`
	City               string     `db:"city"`
	Postcode           string     `db:"postcode"`
	Address            string     `db:"address"`
	Languages          []string   `db:"languages"`
	PhotoURL           string     `db:"photo_url"`
	OffersVideo        bool       `db:"offers_video"`
	DistanceKm         *float64   `db:"distance_km"`
	NextStart          *time.Time `db:"next_start"`
	NextDuration       *int       `db:"next_duration"`
	NextConsultationID *string    `db:"next_type_id"`
	HasMore            bool       `db:"has_more"` // another page follows
}

// kmPerDegreeLat is the length of one degree of latitude; a degree of
// longitude is that times cos(latitude).
const kmPerDegreeLat = 111.195

// SearchPractitioners runs a directory search. Disabled or erased
// accounts are dropped from the page after it is cut (filtering them
// before would cost a probe of accounts per candidate), so a page may
// hold fewer than Limit results although later pages exist: more says
// whether one does. The query is assembled
// from the filters present so that PostgreSQL can pick the matching
// index (specialty, city, postcode, the point index, ...) and walk it in
// next-availability order, and only the page's rows are joined to their
// consultation types.
func SearchPractitioners(ctx context.Context, q Q, f SearchFilter) (results []SearchResult, more bool, err error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	nextCol := "p.next_free_at"
	if f.VideoOnly {
		nextCol = "p.next_video_free_at"
		where = append(where, "p.offers_video")
	}
	if f.Specialty != "" {
		where = append(where, "p.specialty = "+arg(f.Specialty))
	}
	if f.City != "" {
		where = append(where, "lower(p.city) = lower("+arg(f.City)+")")
	}
	if f.Postcode != "" {
		where = append(where, "p.postcode = "+arg(f.Postcode))
	}
	if f.Language != "" {
		where = append(where, "p.languages @> ARRAY["+arg(f.Language)+"]::text[]")
	}
	distance := "NULL::float8"
	if f.Near != nil {
		r := f.RadiusKm
		if r <= 0 {
			r = 10
		}
		dLat := r / kmPerDegreeLat
		cos := cosDeg(f.Near.Lat)
		if cos < 0.01 {
			cos = 0.01
		}
		dLon := r / (kmPerDegreeLat * cos)
		box := fmt.Sprintf("box(point(%s, %s), point(%s, %s))",
			arg(f.Near.Lon-dLon), arg(f.Near.Lat-dLat), arg(f.Near.Lon+dLon), arg(f.Near.Lat+dLat))
		where = append(where, "p.latitude IS NOT NULL", "point(p.longitude, p.latitude) <@ "+box)
		lat, lon := arg(f.Near.Lat), arg(f.Near.Lon)
		// Haversine, in SQL so that the radius can filter and sort.
		distance = fmt.Sprintf(`(2 * 6371.0 * asin(sqrt(power(sin(radians(p.latitude - %[1]s::float8) / 2), 2) +
			cos(radians(%[1]s::float8)) * cos(radians(p.latitude)) * power(sin(radians(p.longitude - %[2]s::float8) / 2), 2))))`, lat, lon)
		where = append(where, distance+" <= "+arg(r))
	}
	order := nextCol + " ASC NULLS LAST, p.account_id"
	if f.ByDistance && f.Near != nil {
		order = "distance_km, p.account_id"
	}
	if f.Limit <= 0 || f.Limit > 100 {
		f.Limit = 20
	}
	cond := "true"
	if len(where) > 0 {
		cond = strings.Join(where, " AND ")
	}
	modeCond := "true"
	if f.VideoOnly {
		modeCond = "c.mode = 'video'"
	}
	outer := strings.ReplaceAll(strings.ReplaceAll(order, "p.account_id", "account_id"), nextCol, "next_at")
	// One row more than the page tells whether another page follows.
	sql := `WITH cut AS (
			SELECT p.account_id, p.specialty, p.city, p.postcode, p.address, p.languages, p.photo_url,
				p.offers_video, ` + distance + ` AS distance_km, ` + nextCol + ` AS next_at
			FROM practitioners p
			WHERE ` + cond + `
			ORDER BY ` + order + `
			LIMIT ` + arg(f.Limit+1) + ` OFFSET ` + arg(f.Offset) + `),
		page AS (SELECT cut.*, row_number() OVER (ORDER BY ` + outer + `) AS n FROM cut)
		SELECT page.account_id, a.name, page.specialty, page.city, page.postcode, page.address, page.languages,
			page.photo_url, page.offers_video, page.distance_km,
			n.next_free_at AS next_start, n.duration_minutes AS next_duration, n.id::text AS next_type_id,
			(SELECT count(*) FROM cut) > ` + arg(f.Limit) + ` AS has_more
		FROM page JOIN accounts a ON a.id = page.account_id AND a.disabled_at IS NULL AND a.erased_at IS NULL
		LEFT JOIN LATERAL (SELECT c.id, c.next_free_at, c.duration_minutes FROM consultation_types c
			WHERE c.practitioner_id = page.account_id AND c.active AND c.next_free_at IS NOT NULL AND ` + modeCond + `
			ORDER BY c.next_free_at, c.id LIMIT 1) n ON true
		WHERE page.n <= ` + arg(f.Limit) + `
		ORDER BY page.n`
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, false, fmt.Errorf("store: search practitioners: %w", err)
	}
	res, err := pgx.CollectRows(rows, pgx.RowToStructByName[SearchResult])
	if err != nil {
		return nil, false, fmt.Errorf("store: search practitioners: %w", err)
	}
	return res, len(res) > 0 && res[0].HasMore, nil
}

func cosDeg(d float64) float64 { return math.Cos(d * math.Pi / 180) }
