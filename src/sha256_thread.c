/*
 * sha256_thread.c: see sha256_thread.h. Deliberately free of PostgreSQL
 * calls: everything here may run on the helper thread or in a libcurl
 * callback, where an ERROR (a longjmp) must never start.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "sha256_thread.h"

#define RING_SIZE (4 * 1024 * 1024)
#define HASH_SPAN (1024 * 1024)	/* most bytes hashed per lock round */

struct Sha256Thread
{
	pthread_t	thread;
	pthread_mutex_t lock;
	pthread_cond_t changed;		/* any field below changed */
	EVP_MD_CTX *md;
	unsigned char *ring;
	size_t		head;			/* next byte written (producer) */
	size_t		used;			/* bytes waiting to be hashed */
	bool		hashing;		/* the thread is hashing outside the lock */
	bool		closing;		/* no more bytes: hash the rest and exit */
	bool		failed;
};

static void *
hash_loop(void *arg)
{
	Sha256Thread *t = arg;

	pthread_mutex_lock(&t->lock);
	for (;;)
	{
		size_t		tail,
					span;
		bool		ok;

		while (t->used == 0 && !t->closing)
			pthread_cond_wait(&t->changed, &t->lock);
		if (t->used == 0)
			break;
		/* The oldest bytes, up to the ring's end: hashed without the lock. */
		tail = (t->head + RING_SIZE - t->used) % RING_SIZE;
		span = t->used;
		if (span > RING_SIZE - tail)
			span = RING_SIZE - tail;
		if (span > HASH_SPAN)
			span = HASH_SPAN;
		t->hashing = true;
		pthread_mutex_unlock(&t->lock);
		ok = EVP_DigestUpdate(t->md, t->ring + tail, span) == 1;
		pthread_mutex_lock(&t->lock);
		if (!ok)
			t->failed = true;
		t->hashing = false;
		t->used -= span;
		pthread_cond_broadcast(&t->changed);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

static void
free_parts(Sha256Thread *t)
{
	EVP_MD_CTX_free(t->md);
	free(t->ring);
	pthread_cond_destroy(&t->changed);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

Sha256Thread *
sha256_thread_start(void)
{
	Sha256Thread *t = calloc(1, sizeof(Sha256Thread));
	sigset_t	all,
				saved;
	pthread_attr_t attr;
	int			rc;

	if (t == NULL)
		return NULL;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->changed, NULL);
	t->ring = malloc(RING_SIZE);
	t->md = EVP_MD_CTX_new();
	if (t->ring == NULL || t->md == NULL || EVP_DigestInit_ex(t->md, EVP_sha256(), NULL) != 1)
	{
		free_parts(t);
		return NULL;
	}

	/* The thread blocks every signal: PostgreSQL's handlers must run on the main thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);	/* the loop needs little */
	rc = pthread_create(&t->thread, &attr, hash_loop, t);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (rc != 0)
	{
		free_parts(t);
		return NULL;
	}
	return t;
}

bool
sha256_thread_feed(Sha256Thread *t, const void *buf, size_t n)
{
	const unsigned char *p = buf;
	bool		ok;

	pthread_mutex_lock(&t->lock);
	while (n > 0 && !t->failed)
	{
		size_t		room,
					chunk;

		while (t->used == RING_SIZE)
			pthread_cond_wait(&t->changed, &t->lock);
		room = RING_SIZE - t->used;
		chunk = n < room ? n : room;
		if (chunk > RING_SIZE - t->head)
			chunk = RING_SIZE - t->head;
		/* The thread never reads the free part of the ring: copying it without the lock is safe. */
		pthread_mutex_unlock(&t->lock);
		memcpy(t->ring + t->head, p, chunk);
		pthread_mutex_lock(&t->lock);
		t->head = (t->head + chunk) % RING_SIZE;
		t->used += chunk;
		p += chunk;
		n -= chunk;
		pthread_cond_broadcast(&t->changed);
	}
	ok = !t->failed;
	pthread_mutex_unlock(&t->lock);
	return ok;
}

bool
sha256_thread_restart(Sha256Thread *t)
{
	bool		ok;

	pthread_mutex_lock(&t->lock);
	while (t->used > 0 || t->hashing)
		pthread_cond_wait(&t->changed, &t->lock);
	/* The thread is idle until more bytes come: the context is ours. */
	ok = EVP_DigestInit_ex(t->md, EVP_sha256(), NULL) == 1;
	t->failed = !ok;
	pthread_mutex_unlock(&t->lock);
	return ok;
}

static void
stop(Sha256Thread *t)
{
	pthread_mutex_lock(&t->lock);
	t->closing = true;
	pthread_cond_broadcast(&t->changed);
	pthread_mutex_unlock(&t->lock);
	pthread_join(t->thread, NULL);
}

bool
sha256_thread_finish(Sha256Thread *t, char *hex)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	bool		ok;

	stop(t);
	ok = !t->failed && EVP_DigestFinal_ex(t->md, digest, &len) == 1 && len * 2 == SHA256_HEX_LENGTH;
	if (ok)
		for (unsigned int i = 0; i < len; i++)
			snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	free_parts(t);
	return ok;
}

void
sha256_thread_discard(Sha256Thread *t)
{
	if (t == NULL)
		return;
	/* Drops what is still queued: the thread sees closing with bytes left and hashes them; cheap (at most the ring). */
	stop(t);
	free_parts(t);
}
