/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The SWIG low layer of the Python (kraken.core, under the package kraken) and
 * Lua (require "kraken") bindings: bindings/kb.h as it is, plus per language
 * the callback objects (kb_callback), the error raised for a failed call and
 * 64-bit integers. Users never see this layer: bindings/python/kraken/ and
 * bindings/lua/kraken.lua are the API.
 */
#ifdef SWIGPYTHON
%module(package="kraken", threads="1") core
#else
%module kraken
#endif

%{
#include "kb.h"
%}

%include <stdint.i>

/* ---- handles: one proxy owns each wrapper; its collection runs kb_*_destroy ----------------- */
%define KB_HANDLE(type, destroy)
%nodefaultctor type;
struct type {};
%extend type {
    ~type() { destroy($self); }
}
%enddef

KB_HANDLE(kb_loop, kb_loop_destroy)
KB_HANDLE(kb_store, kb_store_destroy)
KB_HANDLE(kb_listener, kb_listener_destroy)
KB_HANDLE(kb_decl, kb_decl_destroy)
KB_HANDLE(kb_mutset, kb_mutset_destroy)
KB_HANDLE(kb_engine, kb_engine_destroy)
KB_HANDLE(kb_service, kb_service_destroy)
KB_HANDLE(kb_subscription, kb_subscription_destroy)
KB_HANDLE(kb_moddesc, kb_moddesc_destroy)
KB_HANDLE(kb_module, kb_module_destroy)
KB_HANDLE(kraken_node, kb_node_destroy)
%nodefaultctor kb_call;
struct kb_call {};
%nodefaultctor kb_callback;
struct kb_callback {};

%newobject kb_loop_new;
%newobject kb_store_new;
%newobject kb_engine_store;
%newobject kb_store_listen;
%newobject kb_decl_new;
%newobject kb_mutset_new;
%newobject kb_engine_config_new;
%newobject kb_engine_new;
%newobject kb_engine_subscribe;
%newobject kb_engine_add_service;
%newobject kb_moddesc_new;
%newobject kb_module_new;
%newobject kb_module_connect;
%newobject kb_node_new;
%newobject kb_node_copy;
%newobject kb_node_from_json;
%newobject kb_store_read;
%newobject kb_module_query;
%newobject kb_call_node;
/* malloc'ed strings */
%newobject kb_call_value_text;
%newobject kb_node_to_json;
%newobject kb_node_get_text;
%newobject kb_node_service_ids;
%newobject kb_node_extensions;
%newobject kb_enum_members;
%newobject kb_url_canonical;
%newobject kb_store_ids;
%newobject kb_store_get_text;
%newobject kb_store_to_json;
%newobject kb_mutset_plan;
%newobject kb_mutset_graph_json;
%newobject kb_engine_node_plan;
%newobject kb_engine_node_reason;
%newobject kb_engine_graph_json;

/* Internal to this layer. */
%ignore kb_take_pending;
%ignore kb_clear_pending;
%ignore kb_callback_release;
%ignore kb_call;
%ignore kb_callback;
%ignore kb_engine_config_destroy;

/* ===================================== Python ================================================ */
#ifdef SWIGPYTHON

/* Every call holds the GIL except those that block in the loop or wait for the daemon. */
%nothread;
%thread kb_loop_step;
%thread kb_loop_run_for;
%thread kb_module_connect;
%thread kb_module_reconnect;
%thread kb_module_query;
%thread kb_module_update_cfg;

%{
/* The factory of kraken.Error instances: error_factory(code, message) (kraken/errors.py). */
static PyObject *kb_py_error_factory;

static void kb_py_raise(int code)
{
    const char *msg = kraken_error_last();
    if (kb_py_error_factory) {
        PyObject *exc = PyObject_CallFunction(kb_py_error_factory, "is", code, msg);
        if (exc) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
        return; /* else the factory's own exception stands */
    }
    PyErr_Format(PyExc_RuntimeError, "%s (%s)", msg, kraken_err_name(code));
}

/* A Python callable as a kb_callback: run under the GIL, released once. */
typedef struct kb_py_callback {
    kb_callback base;
    PyObject *fn;
} kb_py_callback;

static void kb_py_invoke(kb_callback *cb, const kb_call *call)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    /* the callable may remove its own registration (releasing cb): keep what we use */
    PyObject *fn = ((kb_py_callback *)cb)->fn;
    Py_INCREF(fn);
    PyObject *arg = SWIG_NewPointerObj((void *)call, SWIGTYPE_p_kb_call, 0);
    PyObject *res = arg ? PyObject_CallOneArg(fn, arg) : NULL;
    if (res)
        Py_DECREF(res);
    else
        PyErr_WriteUnraisable(fn); /* the Python layer reports first; this is the backstop */
    Py_XDECREF(arg);
    Py_DECREF(fn);
    PyGILState_Release(gil);
}

static void kb_py_release(kb_callback *cb)
{
    kb_py_callback *c = (kb_py_callback *)cb;
    if (Py_IsInitialized()) {
        PyGILState_STATE gil = PyGILState_Ensure();
        Py_XDECREF(c->fn);
        PyGILState_Release(gil);
    }
    free(c);
}
%}

%exception kb_py_callback_new {
    $action
    if (!result) {
        PyErr_SetString(PyExc_TypeError, kraken_error_last());
        SWIG_fail;
    }
}
%exception kb_py_set_error_factory {
    $action
}

%inline %{
/** Install the factory of error instances: factory(code, message). */
void kb_py_set_error_factory(PyObject *factory)
{
    Py_XINCREF(factory);
    Py_XDECREF(kb_py_error_factory);
    kb_py_error_factory = factory;
}

/** Wrap a Python callable as a callback; a kb_ registration call takes it over. */
kb_callback *kb_py_callback_new(PyObject *fn)
{
    if (!PyCallable_Check(fn)) {
        kraken_error_set(KRAKEN_EINVAL, "callback: %s object is not callable",
                         Py_TYPE(fn)->tp_name);
        return NULL;
    }
    kb_py_callback *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->base.invoke = kb_py_invoke;
    c->base.release = kb_py_release;
    Py_INCREF(fn);
    c->fn = fn;
    return &c->base;
}
%}

%exception {
    kb_clear_pending();
    $action
    {
        int kb_code_ = kb_take_pending();
        if (kb_code_) {
            kb_py_raise(kb_code_);
            SWIG_fail;
        }
    }
}
#endif

/* ======================================= Lua ================================================= */
#ifdef SWIGLUA

/* 64-bit integers as Lua 5.4 integers, not through doubles. */
%typemap(in, checkfn="lua_isinteger") uint64_t, int64_t %{ $1 = ($1_ltype)lua_tointeger(L, $input); %}
%typemap(out) uint64_t, int64_t %{ lua_pushinteger(L, (lua_Integer)$1); SWIG_arg++; %}
%typemap(typecheck) uint64_t, int64_t %{ $1 = lua_isinteger(L, $input); %}
/* Counts, codes and enum numbers are integers too (SWIG would push floats: 3.0). */
%typemap(out) int, unsigned, uint32_t %{ lua_pushinteger(L, (lua_Integer)$1); SWIG_arg++; %}

%{
static int kb_lua_error_tostring(lua_State *L)
{
    lua_getfield(L, 1, "message");
    return 1;
}

/* Push an error object {code=, name=, message=} whose tostring is the message. */
static void kb_lua_push_error(lua_State *L, int code)
{
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, kraken_err_name(code));
    lua_setfield(L, -2, "name");
    lua_pushstring(L, kraken_error_last());
    lua_setfield(L, -2, "message");
    if (luaL_newmetatable(L, "kraken.Error")) {
        lua_pushcfunction(L, kb_lua_error_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushstring(L, "kraken.Error");
        lua_setfield(L, -2, "__name");
    }
    lua_setmetatable(L, -2);
}

/* A Lua function as a kb_callback: a registry reference, called with lua_pcall. */
typedef struct kb_lua_callback {
    kb_callback base;
    lua_State *L; /* the main thread: valid while the state lives */
    int ref;
} kb_lua_callback;

static void kb_lua_invoke(kb_callback *cb, const kb_call *call)
{
    kb_lua_callback *c = (kb_lua_callback *)cb;
    lua_State *L = c->L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    SWIG_NewPointerObj(L, (void *)call, SWIGTYPE_p_kb_call, 0);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        /* kraken.lua reports callback errors itself; this is the backstop */
        const char *msg = lua_tostring(L, -1);
        lua_warning(L, "kraken: error in a callback: ", 1);
        lua_warning(L, msg ? msg : "(error object is not a string)", 0);
    }
    lua_settop(L, top);
}

static void kb_lua_release(kb_callback *cb)
{
    kb_lua_callback *c = (kb_lua_callback *)cb;
    luaL_unref(c->L, LUA_REGISTRYINDEX, c->ref);
    free(c);
}

/* kraken.kb_lua_callback_new(fn): a callback a kb_ registration call takes over. */
static int kb_lua_callback_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    kb_lua_callback *c = calloc(1, sizeof *c);
    if (!c)
        return luaL_error(L, "out of memory");
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    c->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    lua_pushvalue(L, 1);
    c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    c->base.invoke = kb_lua_invoke;
    c->base.release = kb_lua_release;
    SWIG_NewPointerObj(L, c, SWIGTYPE_p_kb_callback, 0);
    return 1;
}
%}
%native(kb_lua_callback_new) int kb_lua_callback_new(lua_State *L);

/* require "kraken" returns the hand-written layer (lua/kraken.lua, embedded at build time),
   which gets this SWIG table as its argument. */
%init %{
#include "kraken_lua_layer.h"
    if (luaL_loadbuffer(L, kb_lua_layer, sizeof kb_lua_layer - 1, "=kraken.lua") != LUA_OK)
        lua_error(L);
    lua_pushvalue(L, -2);
    lua_call(L, 1, 1);
%}

%exception {
    kb_clear_pending();
    $action
    {
        int kb_code_ = kb_take_pending();
        if (kb_code_) {
            kb_lua_push_error(L, kb_code_);
            SWIG_fail;
        }
    }
}
#endif

%include "kb.h"

/* Constants the layers use by name. */
%include "kraken_enums.i"
