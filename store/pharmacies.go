package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Pharmacy is a pharmacy prescriptions can be sent to.
type Pharmacy struct {
	ID        string   `db:"id" json:"id"`
	Name      string   `db:"name" json:"name"`
	Address   string   `db:"address" json:"address"`
	City      string   `db:"city" json:"city"`
	Postcode  string   `db:"postcode" json:"postcode"`
	Latitude  *float64 `db:"latitude" json:"latitude"`
	Longitude *float64 `db:"longitude" json:"longitude"`
	Phone     string   `db:"phone" json:"phone"`
}

const pharmacyColumns = `id, name, address, city, postcode, latitude, longitude, phone`

// SavePharmacy inserts p (p.ID empty) or updates it, returning it as stored.
func SavePharmacy(ctx context.Context, q Q, p Pharmacy) (Pharmacy, error) {
	if p.ID == "" {
		p.ID = NewUUID()
	}
	rows, err := q.Query(ctx, `INSERT INTO pharmacies (id, name, address, city, postcode, latitude, longitude, phone)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (id) DO UPDATE SET name = $2, address = $3, city = $4, postcode = $5, latitude = $6, longitude = $7, phone = $8
		RETURNING `+pharmacyColumns, p.ID, p.Name, p.Address, p.City, p.Postcode, p.Latitude, p.Longitude, p.Phone)
	if err != nil {
		return Pharmacy{}, fmt.Errorf("store: save pharmacy: %w", err)
	}
	return pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Pharmacy])
}

// PharmacyByID returns a pharmacy.
func PharmacyByID(ctx context.Context, q Q, id string) (Pharmacy, error) {
	if !ValidID(id) {
		return Pharmacy{}, ErrNotFound.With("pharmacy not found")
	}
	rows, err := q.Query(ctx, `SELECT `+pharmacyColumns+` FROM pharmacies WHERE id = $1`, id)
	if err != nil {
		return Pharmacy{}, fmt.Errorf("store: pharmacy: %w", err)
	}
	p, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Pharmacy])
	if err != nil {
		return Pharmacy{}, notFound(err, "pharmacy")
	}
	return p, nil
}

// SetPharmacist ties a pharmacist account to its pharmacy.
func SetPharmacist(ctx context.Context, q Q, accountID, pharmacyID string) error {
	_, err := q.Exec(ctx, `INSERT INTO pharmacists (account_id, pharmacy_id) VALUES ($1, $2)
		ON CONFLICT (account_id) DO UPDATE SET pharmacy_id = $2`, accountID, pharmacyID)
	if err != nil {
		return fmt.Errorf("store: set pharmacist: %w", err)
	}
	return nil
}

// PharmacyOfPharmacist returns the pharmacy a pharmacist account works for.
func PharmacyOfPharmacist(ctx context.Context, q Q, accountID string) (Pharmacy, error) {
	rows, err := q.Query(ctx, `SELECT `+pharmacyColumns+` FROM pharmacies
		WHERE id = (SELECT pharmacy_id FROM pharmacists WHERE account_id = $1)`, accountID)
	if err != nil {
		return Pharmacy{}, fmt.Errorf("store: pharmacy of pharmacist: %w", err)
	}
	p, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Pharmacy])
	if err != nil {
		return Pharmacy{}, notFound(err, "pharmacy")
	}
	return p, nil
}

// SearchPharmacies finds pharmacies by city, postcode or within radiusKm
// of a point (nearest first when near is given), at most limit.
func SearchPharmacies(ctx context.Context, q Q, city, postcode string, near *GeoPoint, radiusKm float64, limit, offset int) ([]Pharmacy, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if city != "" {
		where = append(where, "lower(city) = lower("+arg(city)+")")
	}
	if postcode != "" {
		where = append(where, "postcode = "+arg(postcode))
	}
	order := "name, id"
	if near != nil {
		if radiusKm <= 0 {
			radiusKm = 10
		}
		dLat := radiusKm / kmPerDegreeLat
		c := cosDeg(near.Lat)
		if c < 0.01 {
			c = 0.01
		}
		dLon := radiusKm / (kmPerDegreeLat * c)
		where = append(where, "latitude IS NOT NULL", fmt.Sprintf("point(longitude, latitude) <@ box(point(%s, %s), point(%s, %s))",
			arg(near.Lon-dLon), arg(near.Lat-dLat), arg(near.Lon+dLon), arg(near.Lat+dLat)))
		order = "point(longitude, latitude) <-> point(" + arg(near.Lon) + ", " + arg(near.Lat) + "), id"
	}
	cond := "true"
	if len(where) > 0 {
		cond = strings.Join(where, " AND ")
	}
	if limit <= 0 || limit > 100 {
		limit = 20
	}
	rows, err := q.Query(ctx, `SELECT `+pharmacyColumns+` FROM pharmacies WHERE `+cond+` ORDER BY `+order+
		` LIMIT `+arg(limit)+` OFFSET `+arg(offset), args...)
	if err != nil {
		return nil, fmt.Errorf("store: search pharmacies: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[Pharmacy])
}
