package sfu

// System call numbers that the syscall package does not define on amd64.
const (
	sysRECVMMSG = 299
	sysSENDMMSG = 307
)
