package database

// ReserveQuery is the reserve query, for the plan tests.
func (s *Store) ReserveQuery(n int) string { return s.reserveQuery(n) }
