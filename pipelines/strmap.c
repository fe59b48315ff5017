/*
 * A string -> long hash map in an arena (open addressing, linear probing).
 * It keeps duplicate-key checks and name lookups linear in the size of
 * the file, whatever a generated pipeline looks like.
 */
#include "pipelines/internal.h"

#include <string.h>

struct pipe_strmap_slot {
	const char *key; /* NULL: empty */
	size_t klen;
	uint64_t hash;
	long value;
};

static uint64_t hash_bytes(const char *s, size_t n)
{
	/* FNV-1a, 64 bits. */
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static struct pipe_strmap_slot *find(const struct pipe_strmap *m, const char *key, size_t klen,
				     uint64_t h)
{
	size_t mask = m->cap - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		struct pipe_strmap_slot *s = &m->slots[i];
		if (!s->key)
			return s;
		if (s->hash == h && s->klen == klen && !memcmp(s->key, key, klen))
			return s;
	}
}

static int grow(struct pipe_strmap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 16;
	struct pipe_strmap_slot *slots = pipe_arena_array(m->arena, cap, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	struct pipe_strmap old = *m;
	m->slots = slots;
	m->cap = cap;
	for (size_t i = 0; i < old.cap; i++) {
		if (old.slots[i].key)
			*find(m, old.slots[i].key, old.slots[i].klen, old.slots[i].hash) =
			    old.slots[i];
	}
	return 0;
}

int pipe_strmap_add(struct pipe_strmap *m, const char *key, size_t klen, long value, long *old)
{
	if ((m->len + 1) * 2 > m->cap && grow(m))
		return -ENOMEM;
	uint64_t h = hash_bytes(key, klen);
	struct pipe_strmap_slot *s = find(m, key, klen, h);
	if (s->key) {
		if (old)
			*old = s->value;
		return 0;
	}
	s->key = key;
	s->klen = klen;
	s->hash = h;
	s->value = value;
	m->len++;
	return 1;
}

long pipe_strmap_get(const struct pipe_strmap *m, const char *key, size_t klen)
{
	if (!m->cap)
		return -1;
	const struct pipe_strmap_slot *s = find(m, key, klen, hash_bytes(key, klen));
	return s->key ? s->value : -1;
}
