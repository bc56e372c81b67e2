package provider

import (
	"reflect"
	"testing"

	"github.com/authzd/authz/provider/store"
)

// TestCloneClientSharesNothing: every slice of a client (its metadata's
// included) is copied, so no request shares one with the cache or with
// another request; a field added to store.Client later is caught here.
func TestCloneClientSharesNothing(t *testing.T) {
	t.Parallel()
	var c store.Client
	fill(reflect.ValueOf(&c).Elem())
	d := cloneClient(c)
	check(t, "Client", reflect.ValueOf(c), reflect.ValueOf(d))
}

// fill gives every slice field of v (recursively through structs) one
// element, so sharing is visible.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
	}
}

func check(t *testing.T, path string, a, b reflect.Value) {
	t.Helper()
	switch a.Kind() {
	case reflect.Struct:
		for i := range a.NumField() {
			if a.Type().Field(i).IsExported() {
				check(t, path+"."+a.Type().Field(i).Name, a.Field(i), b.Field(i))
			}
		}
	case reflect.Slice:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			t.Errorf("cloneClient shares %s with the original", path)
		}
	}
}
