package backendtest

import (
	"testing"

	"github.com/connaudit/connaudit/backend/archive"
)

// The archive backend over the trail as a store holds it: the reference
// answers, without any server.
func TestArchive(t *testing.T) {
	Run(t, archive.New(Records()))
}
